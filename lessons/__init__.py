"""Your workspace: fill in the stubs, then run `pytest checks`."""
