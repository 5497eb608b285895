"""``python -m maskshift.cli > docs/cli.md``: the command-line reference."""

from maskshift.cli.reference import reference

print(reference(), end="")
