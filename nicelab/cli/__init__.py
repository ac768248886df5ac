"""The ``nicelab`` command line: :func:`main` parses the options (:mod:`nicelab.cli.app`) and runs
one thin module per subcommand (:mod:`nicelab.cli.commands`); :mod:`nicelab.cli.options` holds
the options several commands share."""

from nicelab.cli.app import COMMANDS, UserError, build_parser, main

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]
