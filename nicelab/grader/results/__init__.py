"""What grading leaves: rows, their signatures, their points, and classes graded in parts.

* :mod:`nicelab.grader.results.report` - a submission's row, the progress and class tables, the
  JSON and CSV files (``nicelab/grader/grade_schema.json`` describes the JSON).
* :mod:`nicelab.grader.results.integrity` - signed rows, clean text, CSV cells, reference copies.
* :mod:`nicelab.grader.results.scores` - points per check from the points per stage.
* :mod:`nicelab.grader.results.shard` - ``nicelab grade SUBS --shard I/N`` and ``nicelab grade merge``.
"""
