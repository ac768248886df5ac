"""``nicelab figures``: make every figure of the course site from the reference solution,
deterministically, and write it where the pages expect it (``docs/figures/...``).

* Stages 1-3: NICE trained on the parabola and on digits (``nicelab train``'s saved model is
  reused when its config and the reference's sources are unchanged): loss curves, density,
  samples, the home page's picture and the flow taken apart layer by layer.
* The parabola runs pages 3-5 quote (``inpaint``, ``outliers``, ``train --prior logistic``): their
  JSON summaries, in ``docs/figures/parabola/``.
* Stages 4-5: when the ``inpaint`` and ``outliers`` subcommands exist, their figures on digits,
  shown by the stage pages between the ``<!-- figures:begin -->`` / ``<!-- figures:end -->``
  markers, which this command rewrites.
* The page "Beyond NICE": NICE, RealNVP and Glow compared (``beyond``: the toy sets and digits,
  ``docs/figures/beyond/beyond.json`` and ``flows.png``; ``beyond-mnist``, only when asked and
  MNIST is cached: ``mnist.json``), see :mod:`nicelab.cli.beyond`.

``mkdocs build`` never trains: it only shows what this command wrote.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from nicelab.cli.commands import train as train_cmd
from nicelab.core import data as data_mod
from nicelab.core import impl as impl_mod
from nicelab.core.config import PRESETS
from nicelab.core.impl import PROJECT_ROOT
from nicelab.plots import figures

#: Stage 4 and 5: (subcommand, docs/figures subfolder, stage page, what to say without figures).
IMAGE_STAGES = (
    ("inpaint", "inpainting", Path("lessons/4-inpainting.md")),
    ("outliers", "outliers", Path("lessons/5-outliers.md")),
)
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
IMPL = "solutions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", type=Path, default=PROJECT_ROOT / "docs",
                        help="the docs folder (figures go to DOCS/figures)")
    parser.add_argument("--only", choices=("parabola", "digits", "inpaint", "outliers", "beyond",
                                            "beyond-mnist"),
                        action="append", help="make only these figures (repeatable); beyond-mnist "
                                              "(the flows on MNIST, minutes) only when named")
    parser.add_argument("--retrain", action="store_true",
                        help="train afresh instead of reusing a model saved under runs/")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _train(name: str, retrain: bool, verbose: bool):
    """The reference trained on ``name`` with its preset (saved under runs/ and reused)."""
    from nicelab.core import runs  # lazy: TensorFlow's start-up cost
    from nicelab.core.training import train  # lazy: TensorFlow's start-up cost

    modules = impl_mod.load_all(IMPL, runs.TRAINED_STAGES)
    data = data_mod.load(name)
    config = PRESETS[name]
    if retrain:
        trained = train(modules, data, config, verbose=verbose)
        runs.save(trained, runs.run_dir(name, config, IMPL))
    else:
        trained, _ = runs.load_or_train(modules, data, config, IMPL, verbose=verbose)
    return trained, modules, data


def _trained_figures(name: str, out: Path, args: argparse.Namespace) -> list[Path]:
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    trained, modules, data = _train(name, args.retrain, not args.quiet)
    made = train_cmd.write_figures(trained, modules, data, out)
    result = train_cmd.report(trained, modules, data)
    result["config"] = {k: v for k, v in vars(trained.config).items()}
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if data.dim == 2:
        lik = modules["likelihood"]
        log_density = tf.function(lambda x: lik.log_likelihood(trained.model, trained.prior, x))
        samples = np.asarray(lik.sample(trained.model, trained.prior, 3000, seed=1))
        made.append(figures.hero(data.test, lambda x: log_density(x).numpy(), samples,
                                 out / "hero.png"))
        made.append(figures.layer_by_layer(figures.flow_stages(trained.model, data.test[:1500]),
                                           out / "layers.png"))
    return made


def _stage_figures(command: str, folder: str, docs: Path) -> list[Path]:
    """Run ``nicelab COMMAND digits --impl solutions`` and copy its PNGs (and its JSON summary,
    whose numbers the stage page quotes) to docs/figures/FOLDER."""
    target = docs / "figures" / folder
    with tempfile.TemporaryDirectory(prefix=f"nicelab-{command}-") as tmp:
        code = _run_command(command, ["digits", "--impl", IMPL, "--out", tmp])
        if code != 0:
            raise RuntimeError(f"nicelab {command} digits --impl {IMPL} exited with {code}.")
        pngs = sorted(Path(tmp).rglob("*.png"))
        if not pngs:
            raise RuntimeError(f"nicelab {command} wrote no PNG figures.")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        copied = []
        for png in pngs:
            name = "-".join(png.relative_to(tmp).parts)
            copied.append(Path(shutil.copy2(png, target / name)))
        for table in sorted(Path(tmp).glob("*.json")):  # the numbers the stage page quotes
            shutil.copy2(table, target / table.name)
    return copied


#: The parabola runs whose numbers pages 3-5 quote: (command, extra arguments, the JSON it
#: writes, the name it gets in docs/figures/parabola/).
PARABOLA_TABLES = (
    ("inpaint", [], "inpainting.json", "inpainting.json"),
    ("outliers", [], "outliers.json", "outliers.json"),
    ("train", ["--prior", "logistic"], "result.json", "logistic_prior.json"),
)


def _parabola_tables(docs: Path) -> list[Path]:
    """Run the parabola commands of :data:`PARABOLA_TABLES` with the reference and keep their
    JSON summaries in docs/figures/parabola (the pages render their numbers from them)."""
    target = docs / "figures" / "parabola"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for command, extra, produced, name in PARABOLA_TABLES:
        with tempfile.TemporaryDirectory(prefix=f"nicelab-{command}-") as tmp:
            code = _run_command(command, ["parabola", "--impl", IMPL, "--out", tmp, *extra])
            found = sorted(Path(tmp).rglob(produced))
            if code != 0 or not found:
                raise RuntimeError(f"nicelab {command} parabola {' '.join(extra)} wrote no {produced}.")
            written.append(Path(shutil.copy2(found[0], target / name)))
    return written


def _run_command(command: str, argv: list[str]) -> int:
    """``nicelab COMMAND ARGV``, run through the command's own module (never back through
    :func:`nicelab.cli.main`, which runs this command)."""
    module = importlib.import_module(f"nicelab.cli.commands.{command}")
    parser = argparse.ArgumentParser(prog=f"nicelab {command}")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.command = command
    return int(module.run(args) or 0)


def update_page(page: Path, images: list[Path], docs: Path, empty: str) -> bool:
    """Rewrite the text between the figure markers of ``page``; True if it changed."""
    text = page.read_text()
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{page} has no {BEGIN} ... {END} markers for its figures.")
    relative = [image.relative_to(docs) for image in images]
    body = figures.gallery(relative, page.relative_to(docs).parent, empty)
    new = text[:start + len(BEGIN)] + "\n" + body + text[stop:]
    if new != text:
        page.write_text(new)
    return new != text


def has_command(name: str) -> bool:
    return importlib.util.find_spec(f"nicelab.cli.commands.{name}") is not None


def run(args: argparse.Namespace) -> int:
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    tf.config.experimental.enable_op_determinism()
    docs = args.docs.resolve()
    wanted = set(args.only or ("parabola", "digits", "inpaint", "outliers", "beyond"))
    made: list[Path] = []
    failed: list[str] = []
    for name in ("parabola", "digits"):
        if name in wanted:
            print(f"== {name}: the reference trained with its preset")
            made += _trained_figures(name, docs / "figures" / name, args)
    if "parabola" in wanted:
        print("== parabola: the runs pages 3-5 quote (inpaint, outliers, a logistic prior)")
        made += _parabola_tables(docs)
    for command, folder, page in IMAGE_STAGES:
        if command not in wanted:
            continue
        if not has_command(command):
            print(f"== {command}: no `nicelab {command}` command yet; its page keeps its note.")
            continue
        print(f"== {command}: nicelab {command} digits --impl {IMPL}")
        try:
            images = _stage_figures(command, folder, docs)
        except RuntimeError as err:
            print(f"nicelab figures: {err} Its page keeps the figures it had.", file=sys.stderr)
            failed.append(command)
            continue
        made += images
        empty = f"Run `nicelab figures` to make this stage's figures (`nicelab {command}`)."
        if update_page(docs / page, images, docs, empty):
            print(f"updated the figures shown in {docs / page}")
    if wanted & {"beyond", "beyond-mnist"}:
        from nicelab.cli import beyond

        if "beyond" in wanted:
            print("== beyond: NICE, RealNVP and Glow on " + ", ".join((*beyond.TOYS, *beyond.IMAGES)))
            made += beyond.make(docs, verbose=not args.quiet)
        if "beyond-mnist" in wanted:
            print("== beyond-mnist: NICE, RealNVP and Glow on MNIST, each with its MNIST preset")
            made += beyond.make_mnist(docs, verbose=not args.quiet)
    print(f"wrote {len(made)} figures:")
    for path in made:
        print(f"  {path}")
    if failed:
        print(f"nicelab figures: no figures from: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
