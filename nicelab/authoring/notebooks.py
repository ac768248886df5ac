"""The course notebooks: plain-text sources in ``notebooks/src/*.py`` (jupytext's percent
format: ``# %%`` starts a code cell, ``# %% [markdown]`` a text cell, magics written as
``# %load_ext ...``) -> ``notebooks/*.ipynb``, and the site's ``docs/notebooks.md`` page.

The sources hold placeholders that the generator fills in from ``[tool.nicelab.notebooks]`` in
``pyproject.toml`` (the one place to set them):

* ``{{REPOSITORY}}`` (``owner/name`` on GitHub) and ``{{BRANCH}}``: where Colab clones the course;
* ``{{COLAB_URL}}``: this notebook's "Open in Colab" address;
* ``{{SITE}}``: the course site's address (with a trailing slash).

The output is deterministic (cell ids from the notebook's name and the cell's position, no
outputs, fixed metadata), so ``stale()`` can tell when a generated file drifted from its source.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.impl import PROJECT_ROOT

SOURCES = PROJECT_ROOT / "notebooks" / "src"
OUTPUT = PROJECT_ROOT / "notebooks"
DOCS_PAGE = PROJECT_ROOT / "docs" / "notebooks.md"
DEFAULTS = {"repository": "YOUR-GITHUB-USER/nicelab", "branch": "main",
            "site": "https://YOUR-GITHUB-USER.github.io/nicelab/"}
#: Notebook name -> (title, the site's page it goes with, relative to docs/).
PAGES = {
    "1-coupling": ("Stage 1: the additive coupling layer", "lessons/1-coupling.md"),
    "2-model": ("Stage 2: the NICE model", "lessons/2-model.md"),
    "3-likelihood": ("Stage 3: likelihood, training and sampling", "lessons/3-likelihood.md"),
    "4-inpainting": ("Stage 4: inpainting", "lessons/4-inpainting.md"),
    "5-outliers": ("Stage 5: outlier detection", "lessons/5-outliers.md"),
    "6-affine": ("Stage 6 (advanced): affine coupling, RealNVP", "lessons/6-affine.md"),
    "7-mixing": ("Stage 7 (advanced): learned mixing, Glow", "lessons/7-mixing.md"),
    "mnist": ("MNIST, the paper's experiment", "mnist.md"),
}


def settings(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> dict[str, str]:
    """``[tool.nicelab.notebooks]`` of ``pyproject.toml`` over :data:`DEFAULTS`."""
    table = {}
    if pyproject.exists():
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("nicelab", {}).get("notebooks", {})
    values = {**DEFAULTS, **{k: str(v) for k, v in table.items() if k in DEFAULTS}}
    values["site"] = values["site"].rstrip("/") + "/"
    return values


def colab_url(name: str, config: dict[str, str]) -> str:
    """The "Open in Colab" address of ``notebooks/<name>.ipynb`` on GitHub."""
    return (f"https://colab.research.google.com/github/{config['repository']}/blob/"
            f"{config['branch']}/notebooks/{name}.ipynb")


def fill(text: str, name: str, config: dict[str, str]) -> str:
    """The source with its placeholders filled in."""
    for key, value in {"REPOSITORY": config["repository"], "BRANCH": config["branch"],
                       "COLAB_URL": colab_url(name, config), "SITE": config["site"]}.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render(source: str, name: str, config: dict[str, str] | None = None) -> str:
    """One percent-format source -> the ``.ipynb`` file's text (nbformat 4.5, no outputs)."""
    import jupytext  # optional: the [dev] / [notebooks] extras
    import nbformat  # optional extra

    config = config or settings()
    parsed = jupytext.reads(fill(source, name, config), fmt="py:percent")
    cells = []
    for i, cell in enumerate(parsed.cells):
        metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        common = {"id": f"{name}-{i}", "metadata": metadata, "source": cell.source}
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(**common))
        else:
            cells.append(nbformat.v4.new_code_cell(**common))
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
    })
    notebook.nbformat_minor = 5
    nbformat.validate(notebook)
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def docs_page(config: dict[str, str] | None = None) -> str:
    """The text of ``docs/notebooks.md``: every notebook with its Colab link and lesson page."""
    config = config or settings()
    rows = "\n".join(
        f"| [{title}]({page}) | `notebooks/{name}.ipynb` | [Open in Colab]({colab_url(name, config)}) |"
        for name, (title, page) in PAGES.items())
    return _PAGE.replace("{{ROWS}}", rows)


@dataclass
class Output:
    path: Path
    text: str

    @property
    def stale(self) -> bool:
        return not self.path.exists() or self.path.read_text() != self.text


def outputs(sources: Path = SOURCES, output: Path = OUTPUT, docs: Path | None = DOCS_PAGE) -> list[Output]:
    """Every generated file and the text it should hold."""
    config = settings()
    files = sorted(sources.glob("*.py"))
    if not files:
        raise FileNotFoundError(f"no notebook sources (*.py) in {sources}")
    result = [Output(output / f"{f.stem}.ipynb", render(f.read_text(), f.stem, config)) for f in files]
    if docs is not None:
        result.append(Output(docs, docs_page(config)))
    return result


def stale(**kwargs) -> list[Path]:
    """The generated files that differ from what their sources give (or are missing)."""
    return [o.path for o in outputs(**kwargs) if o.stale]


def write(**kwargs) -> list[Path]:
    """Write every generated file that changed; return those written."""
    written = []
    for o in outputs(**kwargs):
        if o.stale:
            o.path.parent.mkdir(parents=True, exist_ok=True)
            o.path.write_text(o.text)
            written.append(o.path)
    return written


def execute(path: Path, env: dict[str, str] | None = None, timeout: float = 600.0,
            cell_timeout: float | None = None):
    """Run the notebook at ``path`` top to bottom in a fresh kernel (nbclient), in its own folder;
    return the executed notebook. ``env`` is added to this process's environment for the kernel
    (``NICELAB_IMPL``, ``NICELAB_NB_EPOCHS``, ...). A cell that raises stops the run with
    nbclient's ``CellExecutionError``; a run longer than ``timeout`` seconds in all, with
    :class:`TimeoutError`.
    """
    import nbformat  # optional extra
    from nbclient import NotebookClient  # optional extra

    notebook = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})  # the kernel inherits it
    client = NotebookClient(notebook, timeout=int(cell_timeout or timeout), kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                if time.perf_counter() - start > timeout:
                    raise TimeoutError(f"{Path(path).name} ran past {timeout:.0f} s (at cell {index})")
                client.execute_cell(cell, index)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


_PAGE = """\
# Notebooks

<!-- Generated by `nicelab notebooks` from nicelab/authoring/notebooks.py: edit it there. -->

Each stage has a Jupyter notebook, and so has the MNIST chapter. A notebook opens with the
stage's idea, runs the stage's checks in a cell (`nicelab.check("coupling")` prints the same
verdicts as `pytest checks -m coupling`), then trains, plots and experiments with **your own
code** in `lessons/`: other toy data sets, inpainting any set of pixels, corruption levels and
thresholds. The notebooks hold no answers: the code to write stays in `lessons/`.

| Lesson | Notebook | Colab |
| --- | --- | --- |
{{ROWS}}

## On your own machine

```bash
pip install -e ".[notebooks]"      # JupyterLab and the kernel, once
jupyter lab notebooks/             # then open 1-coupling.ipynb
```

Each notebook reloads your lesson modules whenever they change (IPython's `autoreload`): edit
`lessons/coupling.py` in your editor, run the cell again, and it runs your new code, with no
restart. The first cell, which installs the course on Colab, does nothing here.

`IMPL = "lessons"` at the top of a notebook runs your code; set the environment variable
`NICELAB_IMPL=solutions` before starting Jupyter to run the reference instead (that is how the
project's tests run every notebook). `NICELAB_NB_EPOCHS` sets how long the notebooks train.

## On Colab

The "Open in Colab" link opens the notebook from the course's repository. Its first cell clones
the course into `/content/nicelab` and installs it. Edit your lesson modules there (the file
browser on the left, `nicelab/lessons/`), and **download them before the runtime ends**: a
Colab runtime forgets its files.

!!! note "Instructors: where the links point"
    The Colab links and the Colab cell's `git clone` use `[tool.nicelab.notebooks]` in
    `pyproject.toml` (`repository`, `branch`, `site`). Set them to where you publish the
    course, run `nicelab notebooks` (it rewrites `notebooks/*.ipynb` and this page from the
    sources in `notebooks/src/`) and commit the result. The tests fail while the generated
    files differ from their sources.

## Toy data sets

Besides the parabola, `nicelab train` and the notebooks know three more 2-D data sets, made
from a seed (no download), with fixed train / validation / test splits: `moons` (two
interleaving half circles), `rings` (three concentric circles) and `gaussian_grid` (a 3 x 3
grid of Gaussians, whose entropy, about 2.627 nats, is the floor for the test NLL).

```bash
nicelab train moons --impl solutions
```

Trained with the reference and the data sets' presets (these figures come from
`nicelab train NAME --impl solutions --out docs/figures/NAME`):

![Two moons: data and the density NICE learned](figures/moons/density.png)
![Two moons: data and samples](figures/moons/samples.png)

![Rings: data and the density NICE learned](figures/rings/density.png)
![Rings: data and samples](figures/rings/samples.png)

![Grid of Gaussians: data and the density NICE learned](figures/gaussian_grid/density.png)
![Grid of Gaussians: data and samples](figures/gaussian_grid/samples.png)

Each figure's folder has the run's `result.json` (test NLL; for the grid, the gap to its
entropy). A volume-preserving stack of additive couplings bends space one coordinate at a
time, so pieces the data keeps apart (the grid's modes, the rings' gaps) come out joined by thin
bridges of density, and the density shows creases where a coupling network's ReLUs switch.
More couplings help a little; the affine couplings of later flows (RealNVP) help more.

The rings are denser towards the upper right on purpose: perfectly symmetric rings sit at a
saddle point of a fresh NICE (its couplings start as the identity, and by symmetry no shift
gets a gradient), and a model started there never learns them.
"""
