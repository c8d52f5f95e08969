from clintune.cli import entry

entry()
