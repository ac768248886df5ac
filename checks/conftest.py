"""The nicelab grader's fixtures (they live in :mod:`nicelab.checks_plugin`).

``pytest checks`` grades ``lessons/``; ``--impl solutions`` grades the reference; ``--impl``
also takes a directory holding the lesson modules or a package name (or set NICELAB_IMPL).

Stage N is graded with *your* module for stage N on top of the *reference* modules of the
earlier stages, so an unfinished stage 1 never drowns stage 2 in failures.
"""

from nicelab.checks_plugin import *  # noqa: F403 - the option, hooks and stage fixtures
