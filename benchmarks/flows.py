"""Section 5 of the bench: NICE, RealNVP and Glow on the same data, trained one after the other
in this process (:func:`nicelab.core.comparison.compare`), so that their wall times compare
under the same load.

On the course's small sets (default: rings and digits) every flow has NICE's preset (on the toy
sets at the comparison's smaller size, :data:`nicelab.core.comparison.SIZES`) and no more
trainable parameters than NICE (the ``params`` budget); on MNIST (``--flows-data mnist``, when
the file is cached) each flow has its own MNIST preset (``preset``: RealNVP's is a same-time
budget), and the issue's goal applies: RealNVP ahead of NICE by a clear margin in nats per image
(:data:`MNIST_MARGIN_GOAL`) in at most :data:`MNIST_TIME_RATIO_GOAL` times NICE's training time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nicelab.core.table import table_lines

#: RealNVP against NICE on MNIST: at least this many nats per image better...
MNIST_MARGIN_GOAL = 100.0
#: ... in at most this many times NICE's training time (same process, 2 cores).
MNIST_TIME_RATIO_GOAL = 2.0


def comparison_table(result) -> str:
    """The comparison as a plain-text table (flow, test NLL, bits/dim, parameters, seconds,
    time / NICE, best epoch)."""
    from nicelab.core import comparison

    return "\n".join(table_lines(comparison.table_rows(result), "<>>>>>>", comparison.TABLE_HEADER))


def budget_of(name: str) -> str:
    """``preset`` on MNIST and Fashion-MNIST (each flow's own preset), else ``params``."""
    return "preset" if name in ("mnist", "fashion_mnist") else "params"


def flow_rows(data_names: Sequence[str], row: Callable, overrides: dict | None = None,
              log: Callable[[str], None] = print, out: Callable[[str], None] = print) -> list:
    """Section 5's rows (``row(measure, value, goal="", status="info", numbers=None)`` makes
    one), one per flow and data set; prints each data set's comparison table with ``out``.
    ``overrides``: TrainConfig fields applied to every flow (the quick bench's tiny size).
    MNIST is skipped (a ``skipped`` row) when its file is not cached."""
    from nicelab.core import comparison, mnist
    from nicelab.core import data as data_mod

    rows = []
    for name in data_names:
        if name in mnist.NAMES and not mnist.cached(name):
            rows.append(row(f"{name}: NICE, RealNVP, Glow", "skipped: no file (see docs/mnist.md)",
                            status="skipped"))
            continue
        data = data_mod.load(name)
        budget = budget_of(name)
        try:
            result = comparison.compare(data, budget=budget, overrides=overrides, log=log)
        except ValueError as err:  # a parameter count no width can match (a tiny NICE, a big D)
            rows.append(row(f"{name}: NICE, RealNVP, Glow", f"skipped: {err}", status="skipped"))
            continue
        out(f"5. flows on {name} ({len(data.train)} train / {len(data.test)} test, D = {data.dim}; "
            f"{'same parameter count' if budget == 'params' else 'each flow its own preset'}):")
        out("\n".join(f"  {line}" for line in comparison_table(result).splitlines()))
        nice = result.run("nice")
        for run in result.runs:
            bpd = "" if run.bits_per_dim is None else f" = {run.bits_per_dim:.3f} bits/dim"
            value = (f"test NLL {run.test_nll:.3f} nats{bpd}; {run.parameters:,} parameters; "
                     f"{run.seconds:.1f} s ({run.time_ratio:.2f}x NICE's); best epoch {run.best_epoch}/"
                     f"{run.epochs}")
            goal, status = "", "info"
            if name == "mnist" and run.flow == "realnvp":
                margin = nice.test_nll - run.test_nll
                goal = (f">= {MNIST_MARGIN_GOAL:.0f} nats ahead of NICE in <= "
                        f"{MNIST_TIME_RATIO_GOAL:.0f}x its time")
                ok = margin >= MNIST_MARGIN_GOAL and run.time_ratio <= MNIST_TIME_RATIO_GOAL
                status = "met" if ok else "NOT met"
                value += f"; {margin:+.1f} nats per image against NICE"
            rows.append(row(f"{name}: {run.title} ({run.config['num_couplings']} x "
                            f"{run.config['hidden_layers']} x {run.config['hidden_units']})", value, goal,
                            status, {"test_nll": run.test_nll, "bits_per_dim": run.bits_per_dim,
                                     "parameters": run.parameters, "seconds": run.seconds,
                                     "time_ratio": run.time_ratio, "budget": budget,
                                     "config": run.config}))
    return rows
