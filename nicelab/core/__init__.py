"""Core of nicelab: data, training settings and storage (issue 13's target layout).

Only new modules live here for now; the existing ones move in with issue 13.
"""
