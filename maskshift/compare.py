"""``python -m maskshift.compare``: see :mod:`maskshift.cli.compare`."""

import sys

from maskshift.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
