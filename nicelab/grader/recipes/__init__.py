"""Recipes: the check-side code that must run next to the graded objects.

A check calls ``beside(recipe, *args)`` (or ``twin(recipe, *args)``, :mod:`nicelab.grader.remote`):
in-process (``pytest checks``) the recipe simply runs; in a remotely graded run it runs in the
child that holds the student's objects (autodiff through their layers, a training run with
their ``train_step``, a reference model built for their functions to use) and only its answer
(arrays, numbers, handles) comes back, for the check to judge. A recipe never decides a verdict.

Recipes are registered with :func:`recipe`; the child runs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``"module:qualname"`` -> the recipe.
REGISTRY: dict[str, Callable] = {}


def recipe(fn: Callable) -> Callable:
    """Register ``fn`` as a recipe (the child only runs registered functions)."""
    REGISTRY[f"{fn.__module__}:{fn.__qualname__}"] = fn
    return fn
