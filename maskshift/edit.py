"""``python -m maskshift.edit``: see :mod:`maskshift.cli.edit`."""

import sys

from maskshift.cli.edit import main

if __name__ == "__main__":
    sys.exit(main())
