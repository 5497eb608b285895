"""``python -m maskshift.data.prepare``: see :mod:`maskshift.cli.prepare`."""

import sys

from maskshift.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
