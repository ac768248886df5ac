"""The ``nicelab`` command line. Each subcommand lives in ``nicelab.cli.commands.<name>`` and
provides ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from nicelab.core.impl import ImplementationError
from nicelab.core.mnist import DataUnavailable
from nicelab.core.quiet import import_tensorflow

#: (subcommand, one-line help). The module is nicelab.cli.commands.<subcommand>.
COMMANDS = (
    ("train", "train NICE on a data set with an implementation (--impl) and write figures"),
    ("inpaint", "fill in hidden pixels of test images with a trained model"),
    ("outliers", "detect corrupted data by its likelihood"),
    ("grade", "run the checks and print a progress table (or grade a class)"),
    ("watch", "re-run a stage's checks every time you save a lesson file"),
    ("stubs", "regenerate lessons/ from the marked blocks in solutions/"),
    ("figures", "make the docs' figures from the reference, deterministically"),
    ("notebooks", "generate notebooks/*.ipynb from notebooks/src/ (--check, --run)"),
    ("bench", "benchmarks: check-suite speed, training throughput, quality, memory"),
    ("release", "instructors: a student handout (stage by stage) or a Gradescope autograder"),
)


class UserError(Exception):
    """A problem with the user's input or setup: printed as one line, no traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    # Here, not at the top: nicelab.core.training imports TensorFlow, which `--help` must not.
    from nicelab.core.training import TrainingError

    return (UserError, ImplementationError, TrainingError, DataUnavailable, ValueError, TypeError,
            FileNotFoundError)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="nicelab", description="nicelab: build NICE, step by step.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"nicelab.cli.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"nicelab.cli.commands.{name}":
                continue
            raise
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(modules[args.command], "NEEDS_TENSORFLOW", True):
        import_tensorflow()
    try:
        return int(modules[args.command].run(args) or 0)
    except NotImplementedError as err:
        print(f"nicelab {args.command}: not implemented yet - {err}", file=sys.stderr)
        print("Fill in that stub (pytest checks shows your progress), or use --impl solutions.",
              file=sys.stderr)
        return 2
    except _user_errors() as err:
        if os.environ.get("NICELAB_DEBUG"):
            raise
        print(f"nicelab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnicelab {args.command}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
