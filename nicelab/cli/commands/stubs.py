"""``nicelab stubs``: regenerate the student's stubs from the marked blocks in solutions/.

A lesson file a student has edited is never overwritten unless ``--force`` is given;
``--check`` only reports whether lessons/ matches the fresh stubs (exit 1 if not).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nicelab.core.impl import PROJECT_ROOT
from nicelab.core.stubs import generate, make_stub, stage_files

NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solutions", type=Path, default=PROJECT_ROOT / "solutions")
    parser.add_argument("--lessons", type=Path, default=PROJECT_ROOT / "lessons")
    parser.add_argument("--force", action="store_true",
                        help="overwrite lesson files that differ from the fresh stubs (your work!)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if lessons/ differs from the fresh stubs")


def run(args: argparse.Namespace) -> int:
    if not args.solutions.is_dir():
        raise FileNotFoundError(f"no solutions folder at {args.solutions}")
    if args.check:
        stale = [path.name for stage, path in stage_files(args.solutions)
                 if not (args.lessons / path.name).exists()
                 or (args.lessons / path.name).read_text() != make_stub(path.read_text(), stage)]
        if stale:
            print(f"lessons differ from the stubs generated from solutions: {', '.join(stale)}")
            return 1
        print("lessons match the stubs generated from solutions.")
        return 0
    edited = []
    for result in generate(args.solutions, args.lessons, force=args.force):
        print(f"{result.status:9s} {result.path}")
        if result.status == "edited":
            edited.append(result.path.name)
    if edited:
        print(f"kept your edits in {', '.join(edited)}: they differ from the fresh stubs. "
              "Use --force to overwrite them (your work there is lost).")
    return 0
