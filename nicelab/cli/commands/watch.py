"""``nicelab watch [STAGE]``: re-run a stage's checks every time you save a lesson file.

TensorFlow stays loaded between runs, so the verdict for stages 1-2 comes about a second after
the save. Without STAGE, every stage is watched and a save re-runs the stage of the saved file.
"""

from __future__ import annotations

import argparse

from nicelab.cli.commands import add_impl_argument
from nicelab.core.course import STAGE_NAMES
from nicelab.grader.watch import Watcher, fresh_sources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", nargs="?", default=None, metavar="STAGE",
                        help=f"the stage to watch: a number 1-{len(STAGE_NAMES)} or one of "
                             f"{', '.join(STAGE_NAMES)} (default: every stage, the saved file's)")
    add_impl_argument(parser)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between two looks at the files (default 0.1)")
    parser.add_argument("--max-runs", type=int, default=None, help=argparse.SUPPRESS)


def stage_names(text: str | None) -> tuple[str, ...]:
    if text is None:
        return STAGE_NAMES
    if text.isdigit() and 1 <= int(text) <= len(STAGE_NAMES):
        return (STAGE_NAMES[int(text) - 1],)
    if text in STAGE_NAMES:
        return (text,)
    raise ValueError(f"unknown stage {text!r}: give 1-{len(STAGE_NAMES)} or one of {', '.join(STAGE_NAMES)}.")


def run(args: argparse.Namespace) -> int:
    stages = stage_names(args.stage)
    fresh_sources()
    watcher = Watcher(args.impl, stages, interval=args.interval,
                      say=lambda line: print(line, flush=True))
    try:
        watcher.loop(args.max_runs)
    except KeyboardInterrupt:
        print("stopped watching.")
    return 0
