"""The grader's parts (issue 13's target layout): ``watch`` re-runs a stage's checks whenever a
lesson file is saved. (The plugin, assertions, runner and batch grading still live in
``nicelab.checks_plugin``, ``nicelab.checking``, ``nicelab.checkrun`` and ``nicelab.grading``.)"""
