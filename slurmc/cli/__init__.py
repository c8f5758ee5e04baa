"""The command line: one module per command group; parses, calls a use case, prints."""
