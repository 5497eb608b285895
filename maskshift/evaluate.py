"""``python -m maskshift.evaluate``: see :mod:`maskshift.cli.evaluate`."""

import sys

from maskshift.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
