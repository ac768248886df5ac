"""Where a submission's code runs, and the limits it runs under.

* :mod:`nicelab.grader.isolation.sandbox` - the bubblewrap sandbox each stage's module answers from.
* :mod:`nicelab.grader.isolation.student_user` - without bubblewrap (Gradescope), the unprivileged
  user the student's code runs as, its processes found and killed.
* :mod:`nicelab.grader.isolation.memory` - memory that no process maps (memfd, shared memory):
  a memory cgroup per sandbox, or the fallback poll.
* :mod:`nicelab.grader.isolation.process` - one grading process of a submission: its command,
  and the time, memory and process limits the batch enforces on it from outside.
"""
