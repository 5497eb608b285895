"""``python -m maskshift.sequence``: see :mod:`maskshift.cli.sequence`."""

import sys

from maskshift.cli.sequence import main

if __name__ == "__main__":
    sys.exit(main())
