"""Authoring tools (issue 13's target layout): for now, :mod:`nicelab.authoring.notebooks`."""
