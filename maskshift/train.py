"""``python -m maskshift.train``: see :mod:`maskshift.cli.train`."""

import sys

if __name__ == "__main__":
    # join a multi-process run before anything starts a JAX backend (maskshift.hosts)
    from maskshift.cli.launch import join_from_argv

    join_from_argv(sys.argv[1:], "python -m maskshift.train")
    from maskshift.cli.train import main

    sys.exit(main())
