"""What the CLI calls: submit, follow, jobs, inspect, venvs, build."""
