"""The shared image cache: layout, locking, pulling, catalogs."""
