"""reelvault command line: run the whole system on embedded defaults."""
