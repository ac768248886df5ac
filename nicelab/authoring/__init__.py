"""Instructor tools that turn this repository into what students and graders receive.

* :mod:`nicelab.authoring.leaks` - the reference code a student must write, and where it shows.
* :mod:`nicelab.authoring.docs` - the course site of a handout: answers of unreleased stages removed.
* :mod:`nicelab.authoring.release` - ``nicelab release student``: a handout, stage by stage.
* :mod:`nicelab.authoring.gradescope` - ``nicelab release gradescope``: an autograder bundle.
* :mod:`nicelab.authoring.notebooks` - ``nicelab notebooks``: the notebooks generated from their
  plain-text sources.

Nothing here imports TensorFlow. A student handout does not ship this package.
"""
