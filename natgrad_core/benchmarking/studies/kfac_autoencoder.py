"""K-FAC on a deep autoencoder: updates and wall time to a training-loss target.

Martens & Grosse (2015, §13) train Hinton & Salakhutdinov's (2006) deep autoencoders with
K-FAC and report several-fold fewer updates than well-tuned SGD with momentum, at a
per-update cost a small constant factor above a gradient. This study repeats the
comparison at digits scale with the stochastic suite's harness and settings
(:data:`~natgrad_core.benchmarking.grid.SUITE_TABLES` ``"stochastic"``): mini-batches of
128; K-FAC and EKFAC with sampled-label Fisher, moving averages (0.95) and inverses every
20 steps, their damping as tuned by that suite; SGD with momentum 0.9 and Adam with the
learning rates that suite's search selected (``results/stochastic/tuning/selection.json``,
mirrored in :data:`TUNED`). Every run goes through
:func:`~natgrad_core.benchmarking.runner.execute` (one untimed warm-up step, optimizer time
only, full-data records ``records_per_epoch`` times per epoch).

Measures, per run (a run seed draws the split, θ₀ and the batch order):

* the target: the first record with ``L − F* ≤ ρ (L₀ − F*)``, F* the lowest loss of the
  long full-batch L-BFGS reference run from the same θ₀, ρ the suite's target gap;
* ``updates_to_target`` and ``seconds_to_target`` there (``inf`` if never reached);
* ``overhead`` = seconds per update over the whole run / the median time of one
  mini-batch gradient (``grad_time``): what an update costs in gradient evaluations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..grid import SUITE_TABLES, recommended_config
from ..problems import get_problem
from ..reference import ReferenceSpec
from ..runner import RunSpec, execute
from . import Finding, StudyResult, register

SUITE = SUITE_TABLES["stochastic"]
BATCH_SIZE = SUITE["run"]["batch_size"]
K_FAC = {"fisher": "mc", "ema_decay": 0.95, "inv_period": 20}
TUNED = {
    # problem: solver label -> (algorithm, hyperparameters), the stochastic suite's selection
    "digits-deep-autoencoder": {
        "kfac": ("kfac", {**K_FAC, "damping": 1e-3}),
        "ekfac": ("ekfac", {**K_FAC, "damping": 1e-3}),
        "sgd-momentum": ("momentum", {"momentum": 0.9, "learning_rate": 1e-2}),
        "adam": ("adam", {"learning_rate": 3e-3}),
    },
    "digits-autoencoder": {
        "kfac": ("kfac", {**K_FAC, "damping": 1e-1}),
        "ekfac": ("ekfac", {**K_FAC, "damping": 1e-3}),
        "sgd-momentum": ("momentum", {"momentum": 0.9, "learning_rate": 3e-2}),
        "adam": ("adam", {"learning_rate": 3e-2}),
    },
}
"""The tuned configurations of ``results/stochastic/tuning/selection.json`` (batch 128
selected for every baseline); the test checks they still agree."""
SIZES = {
    True: {"problem": "digits-autoencoder", "n_seeds": 2, "epochs": 30, "reference_iter": 1000},
    False: {
        "problem": "digits-deep-autoencoder",
        "n_seeds": 3,
        "epochs": 20,
        "reference_iter": 1000,
    },
}
NATURAL = ("kfac", "ekfac")
BASELINES = ("adam", "sgd-momentum")
FEWER_UPDATES = 2.0
"""'Several-fold fewer updates': the claim holds at a median ratio of at least this."""
MAX_OVERHEAD = 3.0
"""'A small constant factor': an update costing at most this many gradient evaluations."""

COLUMNS = {
    "problem": ("problem name (natgrad list)", ""),
    "solver": ("solver label", ""),
    "algorithm": ("optimizer (make_optimizer name)", ""),
    "params": ("its hyperparameters", ""),
    "seed": ("run seed (split, θ₀, batch order, sampled labels)", ""),
    "target_gap": ("ρ: the target leaves this fraction of L₀ − F*", ""),
    "reference_loss": ("F*: lowest loss of the long full-batch L-BFGS run", "nats"),
    "initial_loss": ("L₀: training loss at θ₀", "nats"),
    "final_loss": ("training loss at the last record", "nats"),
    "updates_to_target": ("updates until L − F* ≤ ρ (L₀ − F*) (inf: never)", "updates"),
    "epochs_to_target": ("the same in passes over the training set", "epochs"),
    "seconds_to_target": ("optimizer seconds until the target (inf: never)", "s"),
    "updates": ("updates in the whole run", "updates"),
    "seconds": ("optimizer seconds of the whole run", "s"),
    "grad_seconds": ("median time of one mini-batch gradient", "s"),
    "overhead": ("seconds per update / grad_seconds", "gradients"),
}


def _specs(size: dict, seed: int) -> list[RunSpec]:
    problem = get_problem(size["problem"])
    gap = SUITE["run"]["by_problem"][problem.name]
    reference = ReferenceSpec("lbfgs", max_iter=size["reference_iter"])
    specs = []
    for label, (algorithm, params) in TUNED[problem.name].items():
        config = recommended_config(algorithm, label, **params)
        for run_seed in range(seed, seed + size["n_seeds"]):
            spec = RunSpec(
                problem,
                config,
                run_seed,
                time_limit=SUITE["run"]["time_limit"],
                target_suboptimality=0.0,
                tol=0.0,
                batch_size=BATCH_SIZE,
                fidelity=False,
                epochs=size["epochs"],
                reference=reference,
                dense_flop_limit=SUITE["run"]["dense_flop_limit"],
                records_per_epoch=gap["records_per_epoch"],
            )
            specs.append(spec)
    return specs


def _summary(spec: RunSpec, frame: pd.DataFrame, target_gap: float) -> dict:
    if frame["status"].iloc[-1] in ("error", "skipped"):
        raise RuntimeError(f"run {spec.solver.label} seed {spec.seed}: {frame['status'].iloc[-1]}")
    frame = frame.sort_values("iteration")
    f_star = float(frame["reference_loss"].iloc[0])
    initial = float(frame["loss"].iloc[0])
    gap = frame["loss"].to_numpy() - f_star
    hit = np.flatnonzero(gap <= target_gap * (initial - f_star))
    n_train = int(frame["n_train"].iloc[0])
    updates = float(frame["iteration"].iloc[hit[0]]) if hit.size else np.inf
    last = frame.iloc[-1]
    grad_seconds = float(frame["grad_time"].iloc[0])
    return {
        "problem": spec.problem.name,
        "solver": spec.solver.label,
        "algorithm": spec.solver.solver,
        "params": ", ".join(f"{k}={v}" for k, v in spec.solver.params),
        "seed": spec.seed,
        "target_gap": target_gap,
        "reference_loss": f_star,
        "initial_loss": initial,
        "final_loss": float(last["loss"]),
        "updates_to_target": updates,
        "epochs_to_target": updates * BATCH_SIZE / n_train,
        "seconds_to_target": float(frame["time"].iloc[hit[0]]) if hit.size else np.inf,
        "updates": int(last["iteration"]),
        "seconds": float(last["time"]),
        "grad_seconds": grad_seconds,
        "overhead": float(last["time"]) / int(last["iteration"]) / grad_seconds,
    }


def _figure(traces: dict, table: pd.DataFrame, target_gap: float):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = dict(
        zip(TUNED[table.problem.iloc[0]], plt.rcParams["axes.prop_cycle"].by_key()["color"])
    )
    for (label, _seed), frame in traces.items():
        row = table[(table.solver == label) & (table.seed == _seed)].iloc[0]
        rel = (frame["loss"] - row.reference_loss) / (row.initial_loss - row.reference_loss)
        first = _seed == table.seed.min()
        for ax, x in ((left, frame["iteration"]), (right, frame["time"])):
            ax.plot(x, rel, color=colors[label], lw=1, label=label if first else None)
    for ax in (left, right):
        ax.axhline(target_gap, color="k", ls="--", lw=0.8, label=f"target ρ = {target_gap:g}")
        ax.set_yscale("log")
    left.set_xlabel("updates (batch 128)")
    right.set_xlabel("optimizer seconds")
    right.set_xscale("log")
    left.set_ylabel("(L − F*) / (L₀ − F*)")
    left.set_title(f"{table.problem.iloc[0]}: training loss gap per update")
    right.set_title("per second")
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _median(table: pd.DataFrame, solver: str, column: str) -> float:
    return float(np.median(table.loc[table.solver == solver, column].to_numpy()))


def _findings(table: pd.DataFrame) -> list[Finding]:
    findings = []
    for natural in NATURAL:
        overhead = _median(table, natural, "overhead")
        for baseline in BASELINES:
            fewer = _median(table, baseline, "updates_to_target") / _median(
                table, natural, "updates_to_target"
            )
            slower = _median(table, natural, "seconds_to_target") / _median(
                table, baseline, "seconds_to_target"
            )
            word = "more" if slower >= 1 else "less"
            times = slower if slower >= 1 else 1 / slower
            findings.append(
                Finding(
                    f"{natural} reaches the target in several-fold (≥ {FEWER_UPDATES:g}×) "
                    f"fewer updates than tuned {baseline}",
                    f"{natural} reaches the target in {fewer:.3g}× fewer updates and "
                    f"{times:.3g}× {word} time than tuned {baseline} (medians over seeds); "
                    f"its update costs {overhead:.3g} gradient evaluations",
                    {
                        "updates_ratio": fewer,
                        "time_ratio": slower,
                        "overhead": overhead,
                        "natural_updates": _median(table, natural, "updates_to_target"),
                        "baseline_updates": _median(table, baseline, "updates_to_target"),
                    },
                    bool(fewer >= FEWER_UPDATES),
                )
            )
    for natural in NATURAL:
        slower = {
            b: _median(table, natural, "seconds_to_target") / _median(table, b, "seconds_to_target")
            for b in BASELINES
        }
        findings.append(
            Finding(
                f"{natural}'s fewer updates also buy less wall time to the target than both "
                "tuned baselines",
                f"{natural}'s median seconds to target / the baseline's: "
                + ", ".join(f"{b}: {v:.3g}" for b, v in slower.items()),
                {"time_ratio": slower},
                bool(all(v < 1 for v in slower.values())),
            )
        )
    overhead = {s: _median(table, s, "overhead") for s in NATURAL}
    baseline_overhead = {s: _median(table, s, "overhead") for s in BASELINES}
    findings.append(
        Finding(
            f"a K-FAC/EKFAC update costs at most {MAX_OVERHEAD:g} mini-batch gradient "
            "evaluations (a small constant factor)",
            "median seconds per update / one gradient: "
            + ", ".join(f"{k}: {v:.3g}" for k, v in {**overhead, **baseline_overhead}.items()),
            {"overhead": overhead, "baseline_overhead": baseline_overhead},
            bool(all(v <= MAX_OVERHEAD for v in overhead.values())),
        )
    )
    return findings


@register(
    "kfac-autoencoder",
    "K-FAC on a deep autoencoder: updates and seconds to a loss target vs tuned first-order",
    "Martens & Grosse (2015), Optimizing Neural Networks with Kronecker-factored "
    "Approximate Curvature, §13 (deep autoencoders)",
    COLUMNS,
)
def run(quick: bool, seed: int) -> StudyResult:
    size = SIZES[bool(quick)]
    target_gap = SUITE["run"]["by_problem"][size["problem"]]["target_gap"]
    rows, traces = [], {}
    for spec in _specs(size, seed):
        frame = execute(spec)
        rows.append(_summary(spec, frame, target_gap))
        traces[spec.solver.label, spec.seed] = frame.sort_values("iteration")
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    settings = {
        **size,
        "seeds": sorted({int(s) for s in table.seed}),
        "batch_size": BATCH_SIZE,
        "target_gap": target_gap,
        "reference": {"solver": "lbfgs", "max_iter": size["reference_iter"], "batch": "full"},
        "solvers": {k: [a, p] for k, (a, p) in TUNED[size["problem"]].items()},
        "tuned_from": "results/stochastic/tuning/selection.json",
    }
    return StudyResult(table, _figure(traces, table, target_gap), _findings(table), settings)
