"""The ``chaosproxy`` command line: run, validate, explain, list, schema, stats, demo."""
