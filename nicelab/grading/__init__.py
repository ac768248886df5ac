"""``nicelab grade``: the progress table, JSON / CSV results, and batch grading of a class.

* :mod:`nicelab.grading.report` - stage statuses, points, hints, the tables and the files.
* :mod:`nicelab.grading.batch` - a class: sandboxed processes per submission, limits, resume
  (the sandbox and the results' integrity are in :mod:`nicelab.grader`).
* :mod:`nicelab.grading.worker` - the process that grades one submission.

Nothing here imports TensorFlow at module level.
"""
