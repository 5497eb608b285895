"""The command-line entry points: each module parses flags, calls one library function and
prints. Nothing in the library imports this package; ``python -m maskshift.train`` (and
``evaluate``, ``compare``, ``edit``) are two-line modules that run these."""
