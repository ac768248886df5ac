"""``nicelab bench``: the benchmarks (check-suite speed, training throughput, quality against
limits, memory, the flows compared), printed as one table; ``--out DIR`` also writes it as JSON
and Markdown."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from nicelab.core.data import DATASETS
from nicelab.core.impl import PROJECT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--section", type=int, action="append", choices=(1, 2, 3, 4, 5), metavar="N",
                        help="run only section N (repeatable): 1 feedback speed, 2 training "
                             "throughput, 3 quality against limits, 4 memory, 5 NICE, RealNVP and "
                             "Glow on the same data")
    parser.add_argument("--flows-data", action="append", choices=DATASETS, metavar="DATA",
                        help="section 5: the data sets to compare the flows on (repeatable; default "
                             "rings and digits; mnist: each flow's MNIST preset, when the file is cached)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: checks the bench runs end to end; its figures mean little")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out of section 2")
    parser.add_argument("--rounds", type=int, help="section 2: timed rounds per contender (default 7)")
    parser.add_argument("--out", type=Path, help="also write bench.json, bench.md and bench.txt here")


def _benchmarks():
    """The repository's ``benchmarks/`` package (not part of the installed nicelab; imported here,
    on first use, because it imports TensorFlow)."""
    if not (PROJECT_ROOT / "benchmarks" / "__init__.py").is_file():
        raise FileNotFoundError("the benchmarks live in the repository's benchmarks/ folder, "
                                "which this copy of nicelab does not have.")
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    return importlib.import_module("benchmarks")


def run(args: argparse.Namespace) -> int:
    bench = _benchmarks()
    settings = bench.BenchSettings.quick() if args.quick else bench.BenchSettings()
    settings.torch = not args.no_torch
    if args.rounds is not None:
        if args.rounds < 1:
            raise ValueError("--rounds must be at least 1.")
        settings.rounds = args.rounds
    header = f"nicelab bench{' --quick' if args.quick else ''} on {bench.machine()}"
    if args.flows_data:
        settings.flows_data = tuple(dict.fromkeys(args.flows_data))
    rows = bench.Bench(settings).run(args.section or tuple(bench.SECTIONS))
    print(header)
    print(bench.format_table(rows))
    if args.out:
        for path in bench.write(rows, args.out, header):
            print(f"wrote {path}")
    return 0
