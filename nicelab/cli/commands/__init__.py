"""The subcommands of the ``nicelab`` command line, one module each."""

import argparse

from nicelab.core.data import DATASETS
from nicelab.core.impl import default_impl


def add_impl_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impl", default=default_impl(),
        help="what to run: 'lessons' (yours, the default), 'solutions' (the reference), "
             "a directory holding the lesson modules, or a package name",
    )


def add_data_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The data set, as a positional argument (``nicelab train digits``) or ``--data``."""
    parser.add_argument("data", nargs="?", choices=DATASETS, default=None, metavar="DATA",
                        help=f"data set: {', '.join(DATASETS)}")
    parser.add_argument("--data", dest="data_option", choices=DATASETS, default=None,
                        metavar="DATA", help="the same, as an option")
    parser.set_defaults(data_default=default)


def data_name(args: argparse.Namespace) -> str:
    name = args.data_option or args.data or args.data_default
    if name is None:
        raise ValueError(f"name a data set: one of {', '.join(DATASETS)}.")
    return name
