"""The course site's macros (the ``mkdocs-macros-plugin`` module, ``macros.module_name`` in
mkdocs.yml): the numbers a page quotes from a run come from that run's JSON, at build time.

Every JSON summary under ``docs/figures/`` (written by ``nicelab figures``) is loaded into the
variable ``fig``, one entry per folder:

* ``fig.<folder>`` is the folder's main summary, ``result.json`` or ``<folder>.json``
  (``fig.parabola.test_nll``, ``fig.inpainting.masks``, ``fig.outliers.threshold``);
* any other JSON of the folder is ``fig.<folder>.<stem>`` (``docs/figures/parabola/outliers.json``
  is ``fig.parabola.outliers``).

Filters and macros, for a page that opts in with ``render_macros: true`` in its front matter
(no other page is rendered, so code and TeX elsewhere never meet Jinja):

* ``{{ x | num(2) }}``: ``x`` with 2 decimals (negative digits round to tens, hundreds...;
  ``{{ x | num }}``: its shortest form, ``4.0`` -> ``4``); ``num(4, sign=True)`` writes the sign,
  ``+0.0045``;
* ``{{ x | pct(1) }}``: a fraction as a percentage, ``0.521`` -> ``52.1 %``;
* ``{{ pick(fig.outliers.rows, kind="noise", level=0.02).recall | num(2) }}``: the one row of a
  list whose fields have the given values;
* ``{{ nice_parameters(64, fig.digits.config) }}``: the parameter count of the reference NICE
  trained with that config.

This file lives in ``docs/`` so that it travels with the pages into a handout
(:mod:`nicelab.authoring.release` copies ``docs/`` whole); mkdocs.yml's ``exclude_docs`` keeps it
out of the site. The tests import it too (``tests/test_docs.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
MAIN_NAMES = ("result.json", "{folder}.json")


def load_figures(figures: Path = FIGURES) -> dict[str, dict]:
    """``fig``: every ``docs/figures/<folder>/*.json``, by folder (see the module docstring)."""
    fig: dict[str, dict] = {}
    for folder in sorted(p for p in figures.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.json"))
        if not files:
            continue
        main_names = {name.format(folder=folder.name) for name in MAIN_NAMES}
        mains = [f for f in files if f.name in main_names]
        if len(mains) > 1:
            raise ValueError(f"{folder}: both {mains[0].name} and {mains[1].name}; keep one main summary.")
        entry = json.loads(mains[0].read_text()) if mains else {}
        for extra in (f for f in files if f not in mains):
            if extra.stem in entry:
                raise ValueError(f"{extra}: its name {extra.stem!r} is also a key of {mains[0].name}.")
            entry[extra.stem] = json.loads(extra.read_text())
        fig[folder.name] = entry
    return fig


def num(value: float, digits: int | None = None, sign: bool = False) -> str:
    """``value`` rounded to ``digits`` decimals (``digits < 0``: to tens, hundreds...), as text;
    without ``digits``, its shortest form (``4.0`` -> ``4``, ``0.25`` -> ``0.25``)."""
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"num: not a finite number: {value!r}")
    if digits is None:
        return f"{float(value):{'+' if sign else ''}g}"
    rounded = round(float(value), digits)
    text = f"{rounded:{'+' if sign else ''}.{max(digits, 0)}f}"
    if float(text) == 0:  # no "-0.00"
        text = text.replace("-", "+" if sign else "")
    return text


def pct(value: float, digits: int = 1) -> str:
    """A fraction as a percentage with a space before the sign: ``0.521`` -> ``52.1 %``."""
    return f"{num(100 * float(value), digits)} %"


def pick(rows: list[dict], **match) -> dict:
    """The one row of ``rows`` whose fields equal ``match`` (an error unless exactly one does)."""
    found = [row for row in rows if all(row.get(key) == want for key, want in match.items())]
    if len(found) != 1:
        raise ValueError(f"pick: {len(found)} rows match {match}, not 1.")
    return found[0]


def nice_parameters(dim: int, config: dict) -> int:
    """The trainable parameters of the reference NICE on ``dim`` dimensions with a run's
    ``config`` (``num_couplings``, ``hidden_layers``, ``hidden_units``): each coupling's network
    maps its kept half to its changed half through ``hidden_layers`` Dense layers of
    ``hidden_units`` (weights and biases), layers alternate which half they keep (even columns
    first), and the scaling layer has ``dim`` log-scales."""
    units, layers = int(config["hidden_units"]), int(config["hidden_layers"])
    total = dim
    for i in range(int(config["num_couplings"])):
        keep = (dim + 1) // 2 if i % 2 == 0 else dim // 2
        change = dim - keep
        sizes = [keep, *[units] * layers, change]
        total += sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
    return total


FILTERS = {"num": num, "pct": pct}
MACROS = {"pick": pick, "num": num, "pct": pct, "nice_parameters": nice_parameters}


def define_env(env) -> None:
    """The hook mkdocs-macros-plugin calls: variables, macros and filters for the pages."""
    env.variables["fig"] = load_figures()
    for name, function in MACROS.items():
        env.macro(function, name)
    for name, function in FILTERS.items():
        env.filter(function, name)
