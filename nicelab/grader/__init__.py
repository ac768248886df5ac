"""The grader's parts that keep a class's grades honest (see :mod:`nicelab.grading.batch`).

* :mod:`nicelab.grader.sandbox` - the bubblewrap sandbox each submission is graded in.
* :mod:`nicelab.grader.integrity` - signed rows, clean text, CSV cells, reference copies.
"""
