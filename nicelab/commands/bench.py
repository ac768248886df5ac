"""``nicelab bench``: the benchmarks (check-suite speed, training throughput, quality against
limits, memory), printed as one table; ``--out DIR`` also writes it as JSON and Markdown."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--section", type=int, action="append", choices=(1, 2, 3, 4), metavar="N",
                        help="run only section N (repeatable): 1 feedback speed, 2 training "
                             "throughput, 3 quality against limits, 4 memory")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: checks the bench runs end to end; its figures mean little")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out of section 2")
    parser.add_argument("--rounds", type=int, help="section 2: timed rounds per contender (default 7)")
    parser.add_argument("--out", type=Path, help="also write bench.json, bench.md and bench.txt here")


def run(args: argparse.Namespace) -> int:
    from nicelab.bench import Bench, BenchSettings, format_table, machine, write

    settings = BenchSettings.quick() if args.quick else BenchSettings()
    settings.torch = not args.no_torch
    if args.rounds is not None:
        if args.rounds < 1:
            raise ValueError("--rounds must be at least 1.")
        settings.rounds = args.rounds
    header = f"nicelab bench{' --quick' if args.quick else ''} on {machine()}"
    rows = Bench(settings).run(args.section or (1, 2, 3, 4))
    print(header)
    print(format_table(rows))
    if args.out:
        for path in write(rows, args.out, header):
            print(f"wrote {path}")
    return 0
