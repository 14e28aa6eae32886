"""The `llmos` command line: thin commands that parse, call the library and print (rich or --json)."""
