"""Reference solutions of the five nicelab stages (same modules and names as ``lessons/``)."""
