"""The ``federation`` command line."""
