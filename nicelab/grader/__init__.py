"""Grading beyond one machine and one repository.

* :mod:`nicelab.grader.released` - which stages a handout releases (``nicelab-release.toml``),
  and the pytest plugin that says "not released yet" for the others.
* :mod:`nicelab.grader.shard` - ``nicelab grade SUBS --shard I/N`` and ``nicelab grade merge``.
* :mod:`nicelab.grader.classroom` - the results of ``nicelab grade --json`` in the form GitHub
  Classroom's autograding reporter reads.

Nothing here imports TensorFlow.
"""
