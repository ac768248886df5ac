"""``nicelab notebooks``: generate ``notebooks/*.ipynb`` and ``docs/notebooks.md`` from the
plain-text sources in ``notebooks/src/`` (see :mod:`nicelab.authoring.notebooks`).

``--check`` writes nothing and exits 1 when a generated file drifted from its source;
``--run NAME`` executes notebooks top to bottom (``--impl``, ``--epochs``) and prints how long
each took.
"""

from __future__ import annotations

import argparse
import time

from nicelab.authoring import notebooks
from nicelab.cli.commands import add_impl_argument

NEEDS_TENSORFLOW = False  # the notebooks run in kernels of their own


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file differs from its source")
    parser.add_argument("--run", nargs="*", metavar="NAME",
                        help="execute these notebooks (no name: all) in fresh kernels and time them")
    add_impl_argument(parser)
    parser.add_argument("--epochs", type=int, default=2, help="NICELAB_NB_EPOCHS for --run (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook for --run")


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = notebooks.stale()
        if stale:
            print("generated files differ from their sources (run `nicelab notebooks`): "
                  + ", ".join(str(p.relative_to(notebooks.PROJECT_ROOT)) for p in stale))
            return 1
        print("notebooks and docs/notebooks.md match their sources.")
        return 0
    for path in notebooks.write():
        print(f"wrote {path.relative_to(notebooks.PROJECT_ROOT)}")
    if args.run is None:
        return 0
    names = args.run or [p.stem for p in sorted(notebooks.OUTPUT.glob("*.ipynb"))]
    env = {"NICELAB_IMPL": str(args.impl), "NICELAB_NB_EPOCHS": str(args.epochs)}
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            notebooks.execute(notebooks.OUTPUT / f"{name}.ipynb", env, timeout=args.timeout)
            verdict = "ran clean"
        except Exception as err:  # noqa: BLE001 - report any failure as one line and go on
            failed += 1
            verdict = f"FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
        print(f"{name}: {verdict} in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0
