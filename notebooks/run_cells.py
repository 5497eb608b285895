"""Run a notebook's code cells in order in one Python process, as a kernel would, where Jupyter
is not installed (an accelerator machine with JAX but no kernel). ``--set NAME=VALUE`` overrides a
parameter right after the first cell that assigns it, as papermill injects parameters; each
cell's wall time is printed after it.

    python notebooks/run_cells.py notebooks/throughput_colab_tpu.ipynb --set FULL=True

A missing notebook, a value that is not a Python literal, or a parameter no cell assigns stops
with one line and exit status 2 before any cell runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import time
from pathlib import Path


def parse_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--set {text}: give NAME=VALUE, e.g. FULL=True")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(f"--set {text}: {value!r} is not a Python literal; quote strings, "
                         "e.g. OUT='\"runs/x\"'") from None


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "code"]


def assigning_cell(cells: list[str], name: str) -> int:
    """The index of the first cell that assigns ``name`` at the top level."""
    pattern = re.compile(rf"^{re.escape(name)}\s*=", re.MULTILINE)
    for i, source in enumerate(cells):
        if pattern.search(source):
            return i
    raise ValueError(f"--set {name}: no cell of the notebook assigns {name}; "
                     "set one of its parameters")


def run_cells(cells: list[str], settings: dict, log=print) -> dict:
    """Execute ``cells`` in one namespace; returns the namespace."""
    after = {}
    for name, value in settings.items():
        after.setdefault(assigning_cell(cells, name), {})[name] = value
    namespace = {"__name__": "__main__"}
    for i, source in enumerate(cells):
        t0 = time.perf_counter()
        exec(compile(source, f"<cell {i}>", "exec"), namespace)
        for name, value in after.get(i, {}).items():
            namespace[name] = value
            log(f"[cell {i}] set {name} = {value!r}")
        log(f"[cell {i}] {time.perf_counter() - t0:.1f} s")
    return namespace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="notebooks/run_cells.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("notebook")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    path = Path(args.notebook)
    if not path.is_file():
        p.exit(2, f"error: {path}: no such notebook\n")
    cells = code_cells(path)
    try:
        settings = dict(parse_setting(s) for s in args.set)
        for name in settings:
            assigning_cell(cells, name)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    run_cells(cells, settings, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
