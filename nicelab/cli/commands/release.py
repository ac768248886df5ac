"""``nicelab release``: what students and graders receive.

* ``nicelab release student OUT --open-stage K`` - a self-contained repository for students:
  the stubs, the checks of stages 1 to K, the references of the stages before K only, the site
  without the answers of stages K and later, ``make run`` / ``make test``, and a GitHub
  Classroom workflow. Run it again over the same folder with K+1 (or into a new one with
  ``--lessons-from``) and the student's ``lessons/`` carries over untouched.
* ``nicelab release gradescope OUT.zip`` - a Gradescope autograder (``setup.sh``,
  ``run_autograder``) grading stages 1 to ``--open-stage`` with ``points.toml``'s points and
  the instructor's hidden checks (``--extra-checks DIR``), hidden until the grades are published.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nicelab.authoring.gradescope import write_bundle
from nicelab.authoring.release import ReleaseError, release_student

NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    student = sub.add_parser("student", help="a student handout opening one stage")
    student.add_argument("out", type=Path, metavar="OUT",
                         help="the handout's folder (new, or an earlier handout)")
    student.add_argument("--open-stage", type=int, required=True, metavar="K",
                         help="the stage students work on now (1-5, or an optional stage from 6 "
                              "on): references only for the stages before it")
    student.add_argument("--lessons-from", type=Path, metavar="DIR",
                         help="copy a student's lessons/ (or a handout holding one) into the new folder")
    student.add_argument("--points", type=Path, metavar="FILE",
                         help="points per stage for the classroom workflow")
    grader = sub.add_parser("gradescope", help="a Gradescope autograder bundle (zip)")
    grader.add_argument("out", type=Path, metavar="OUT.zip")
    grader.add_argument("--open-stage", type=int, default=5, metavar="K",
                        help="grade stages 1 to K (default 5); the bundle holds the references of the "
                             "stages before K only")
    grader.add_argument("--extra-checks", action="append", type=Path, default=[], metavar="DIR",
                        help="hidden checks, shown to students once the grades are published (repeatable)")
    grader.add_argument("--points", type=Path, metavar="FILE",
                        help="points per stage (default nicelab/grader/points.toml)")
    grader.add_argument("--timeout", type=float, default=1200.0, metavar="S",
                        help="wall-time limit of the grading of one submission (default 1200)")
    grader.add_argument("--memory-mb", type=int, default=3072, metavar="M",
                        help="memory limit of the grading process (default 3072)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.kind == "student":
            handout = release_student(args.out, args.open_stage, args.lessons_from, points_file=args.points)
            print(handout.summary())
        else:
            bundle = write_bundle(args.out, args.open_stage, args.extra_checks, args.points,
                                  timeout=args.timeout, memory_mb=args.memory_mb)
            print(bundle.summary())
    except ReleaseError as err:
        raise ValueError(str(err)) from err
    return 0
