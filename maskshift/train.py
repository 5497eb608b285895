"""``python -m maskshift.train``: see :mod:`maskshift.cli.train`."""

import sys

from maskshift.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
