"""The grader's parts.

* :mod:`nicelab.grader.sandbox` - the bubblewrap sandbox each submission is graded in.
* :mod:`nicelab.grader.integrity` - signed rows, clean text, CSV cells, reference copies.
* :mod:`nicelab.grader.remote`, :mod:`nicelab.grader.child`, :mod:`nicelab.grader.wire`,
  :mod:`nicelab.grader.recipes` - remote grading: the checks decide in the grader's process,
  each stage's module answers their requests from a (sandboxed) child process.
* :mod:`nicelab.grader.watch` - ``nicelab watch``: re-run a stage's checks whenever a lesson file
  is saved.
* :mod:`nicelab.grader.released` - which stages a handout releases (``nicelab-release.toml``),
  and the pytest plugin that says "not released yet" for the others.
* :mod:`nicelab.grader.shard` - ``nicelab grade SUBS --shard I/N`` and ``nicelab grade merge``.
* :mod:`nicelab.grader.classroom` - the results of ``nicelab grade --json`` in the form GitHub
  Classroom's autograding reporter reads.
* :mod:`nicelab.grader.inline` - ``nicelab.check(stage)``: the checks run from a notebook cell.

* :mod:`nicelab.grader.plugin` (``nicelab.checks_plugin``), :mod:`nicelab.grader.assertions`
  (``nicelab.checking``) - the pytest plugin and the checks' assertions.
* :mod:`nicelab.grader.runner`, :mod:`nicelab.grader.worker` - the checks run in one pytest
  session; the process that grades one submission.
* :mod:`nicelab.grader.batch`, :mod:`nicelab.grader.submission`, :mod:`nicelab.grader.process`,
  :mod:`nicelab.grader.report` - a class, one submission, one process; the tables and files.
* :mod:`nicelab.grader.fixtures` - the trained reference models stages 4 and 5 are checked with.
"""
