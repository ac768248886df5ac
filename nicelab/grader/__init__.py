"""The grader's parts (issue 13's target layout).

* :mod:`nicelab.grader.sandbox` - the bubblewrap sandbox each submission is graded in.
* :mod:`nicelab.grader.integrity` - signed rows, clean text, CSV cells, reference copies.
* :mod:`nicelab.grader.remote`, :mod:`nicelab.grader.verdicts` - experimental: stage 1's verdicts
  decided in the grader's process from the sandboxed student code's answers.
* :mod:`nicelab.grader.watch` - ``nicelab watch``: re-run a stage's checks whenever a lesson file
  is saved.
* :mod:`nicelab.grader.released` - which stages a handout releases (``nicelab-release.toml``),
  and the pytest plugin that says "not released yet" for the others.
* :mod:`nicelab.grader.shard` - ``nicelab grade SUBS --shard I/N`` and ``nicelab grade merge``.
* :mod:`nicelab.grader.classroom` - the results of ``nicelab grade --json`` in the form GitHub
  Classroom's autograding reporter reads.
* :mod:`nicelab.grader.inline` - ``nicelab.check(stage)``: the checks run from a notebook cell.

(The plugin, assertions, runner and batch grading still live in ``nicelab.checks_plugin``,
``nicelab.grader.assertions``, ``nicelab.grader.runner`` and ``nicelab.grader``.)
"""
