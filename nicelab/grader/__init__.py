"""The grader's parts, by role.

What the checks use (``checks/`` and instructors' hidden checks):

* :mod:`nicelab.grader.plugin` (``nicelab.checks_plugin``), :mod:`nicelab.grader.assertions`
  (``nicelab.checking``) - the pytest plugin and the checks' assertions.
* :mod:`nicelab.grader.evidence` - what the grader computes itself from the graded code's
  answers: Jacobians, verified gradients, shapes, a source read for TFP.
* :mod:`nicelab.grader.hints` - a check's code-level fix, unlocked after repeated failures at home.
* :mod:`nicelab.grader.fixtures` - the trained reference models stages 4 and 5 are checked with.

Where the graded code answers from:

* :mod:`nicelab.grader.remote`, :mod:`nicelab.grader.child`, :mod:`nicelab.grader.wire`,
  :mod:`nicelab.grader.recipes` - remote grading: the checks decide in the grader's process,
  each stage's module answers their requests from a (sandboxed) child process.
* :mod:`nicelab.grader.isolation` - the sandbox, the student user, memory accounting, and one
  grading process with its limits.

Running the checks, for a student and for a class:

* :mod:`nicelab.grader.runner`, :mod:`nicelab.grader.worker` - the checks run in one pytest
  session; the process that grades one submission.
* :mod:`nicelab.grader.batch`, :mod:`nicelab.grader.submission` - a class, one submission.
* :mod:`nicelab.grader.results` - rows, tables and files, signatures, points, shards.
* :mod:`nicelab.grader.watch` - ``nicelab watch``: re-run a stage's checks whenever a lesson file
  is saved.
* :mod:`nicelab.grader.inline` - ``nicelab.check(stage)``: the checks run from a notebook cell.
* :mod:`nicelab.grader.released` - which stages a handout releases (``nicelab-release.toml``),
  and the pytest plugin that says "not released yet" for the others.
* :mod:`nicelab.grader.classroom` - the results of ``nicelab grade --json`` in the form GitHub
  Classroom's autograding reporter reads.
"""
