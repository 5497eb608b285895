"""``python -m maskshift.data.prepare NAME``: download and prepare a TFDS dataset once.

    python -m maskshift.data.prepare mnist --data-dir ~/tfds
    python -m maskshift.data.prepare civil_comments --data-dir ~/tfds

Needs network (the only maskshift command that does). Writes the ``array_record`` format that
``tfds.data_source`` reads; afterwards ``python -m maskshift.train --dataset NAME --data-dir DIR``
runs offline.
"""

from __future__ import annotations

import argparse
import sys

from maskshift.data import TFDS_DATASETS
from maskshift.data.tfds import tfds_name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maskshift.data.prepare",
                                description="Download and prepare a TFDS dataset for maskshift.")
    p.add_argument("name", choices=TFDS_DATASETS)
    p.add_argument("--data-dir", default=None,
                   help="where to write it (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = p.parse_args(argv)
    import tensorflow_datasets as tfds

    full = tfds_name(args.name)
    builder = tfds.builder(full, data_dir=args.data_dir)
    builder.download_and_prepare(file_format="array_record")
    print(f"prepared {full} in {builder.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
