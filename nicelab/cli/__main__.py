"""``python -m nicelab.cli``: the ``nicelab`` command."""

import sys

from nicelab.cli.app import main

sys.exit(main())
