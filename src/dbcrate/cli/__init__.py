"""The ``dbcrate`` command line: parse input, call operations, map errors to exit codes."""
