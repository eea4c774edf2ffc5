"""``natgrad scaling``: time per iteration of every solver as the data grow.

Each :class:`Sweep` varies one size of a synthetic logistic problem
(:class:`~.problems.Problem` with ``dataset="synthetic"``, every seed :data:`SEED`) and
keeps the other fixed: the number of training samples n or of features d (the sizes are
in :func:`sweeps`). Every solver of :data:`optim.registry.SOLVERS` runs in its
recommended configuration, full batch.

:func:`run_scaling`, per sweep and size, in call order:

1. ``load``     the problem's training split: exactly n samples, standardized features.
2. ``skip``     per solver, the leading-order flops of one iteration of its textbook
                algorithm (:data:`COSTS`, below) and the bytes of its dense curvature; a
                point above :data:`FLOP_BUDGET` or :data:`MEMORY_BUDGET` is recorded as
                skipped, with the reason, and not run.
3. ``time``     ``repeats`` runs of ``minimize(..., max_iter=iterations, tol=0)`` from the
                same start with one BLAS/OpenMP thread; a run's time per iteration is the
                optimizer's own clock divided by its steps, ``Result.time / n_iter`` (the
                driver's history evaluations are outside that clock); the row keeps the
                minimum and the median over the repeats.
4. ``write``    the caller's ``on_sweep`` gets the table so far after every sweep, so a
                long run never loses a finished sweep (``natgrad scaling`` writes the
                tables then, and the figure, seconds of drawing, once at the end).

Exponents: :func:`fit_exponent` fits t ≈ a·sᵇ by least squares on (log s, log t). The
table gives b over every measured point of a sweep and over the :data:`FIT_POINTS` largest
(where fixed per-call overheads no longer matter), next to the theory: the same fit of the
cost model of :data:`COSTS` over the same points (so a d³ term that only starts to matter
at the largest d shows up in the theory as it should in the measurement). With
P = K′(d + 1) parameters, K′ = 1 output for two classes and K′ = K otherwise:

========  ===============================================================================
solver    leading flops of one iteration
========  ===============================================================================
gd, momentum, adam, lbfgs
          loss and gradient: forward and backward pass, 4·n·P
diag      gradient + diagonal Fisher Σₙ (∂zₙ/∂θ)²·Λₙ: 6·n·P
cg        gradient + ``cg_maxiter`` Fisher-vector products Jᵀ(Λ(Jv)), 4·n·P each
exact     gradient + min(parameter space: syrk of the (n·K′, P) Jacobian n·K′·P² and
          Cholesky P³/3; sample space (Woodbury): (n·K′)²·P + (n·K′)³/3)
kfac      gradient + factors X̄ᵀΛX̄ and G: n·(d + 1)² + n·K′², their inverses
          (d + 1)³ + K′³, two Fisher-vector products of the quadratic step 8·n·P
ekfac     kfac's factors, eigendecompositions 9·((d + 1)³ + K′³), the per-sample inputs
          and output gradients in the eigenbases n·(d + 1)² + n·K′² and their squared
          products n·P, the quadratic step's 8·n·P
========  ===============================================================================

so the theory exponents are 1 in n for every solver, 1 in d for the first-order solvers,
diag and cg, and 2 in d for exact, kfac and ekfac (3 once the Cholesky or the
eigendecompositions dominate, d ≳ n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._threads import limit_threads
from .._validation import check_choice, check_nonnegative, check_positive_int
from ..optim import SOLVERS, make_optimizer, minimize
from ..optim.registry import RECOMMENDED
from .problems import Problem

__all__ = [
    "COLUMNS",
    "COSTS",
    "EXPONENT_COLUMNS",
    "FIT_POINTS",
    "FLOP_BUDGET",
    "MEMORY_BUDGET",
    "Sweep",
    "exponents",
    "fit_exponent",
    "run_scaling",
    "sweeps",
    "write_scaling",
]

FLOP_BUDGET = 3e10
"""Largest predicted flops of one iteration that is run. Measured on one shared core:
the exact natural gradient at n = 10k, d = 1000 (1.0e10 flops) takes 2 s per iteration,
so the 10-class one at n = 100k, d = 20 (4.4e10, skipped) would take about 9 s."""
MEMORY_BUDGET = 2 * 2**30
"""Largest predicted bytes of a solver's dense curvature (the exact Fisher, P² floats)."""
FIT_POINTS = 3
"""The largest sizes of a sweep that the asymptotic exponent is fitted on."""
EXPONENT_DECIMALS = 2
"""Decimals of a fitted exponent: timings on a shared machine move it by a few 0.01."""
ITERATIONS = 3
"""Optimizer steps per timed run (quick: 2)."""
REPEATS = 3
"""Timed runs per point; the table keeps the minimum and the median per iteration."""
SEED = 0
"""Problem seed (the synthetic data), run seed (the split) and θ₀ seed of every point."""

COLUMNS = {
    "sweep": ("which size grows, and the problem", ""),
    "solver": ("solver name (optim.registry), in its recommended configuration", ""),
    "n_samples": ("training samples n", "samples"),
    "n_features": ("features d", "features"),
    "n_classes": ("classes K", "classes"),
    "n_params": ("parameters P = K'(d + 1), K' = 1 for two classes, else K", "parameters"),
    "model_flops": ("leading flops of one iteration of the textbook algorithm", "flops"),
    "iterations": ("optimizer steps of each timed run (fewer if it ended early)", "steps"),
    "repeats": ("timed runs", "runs"),
    "time_min": ("time per iteration (optimizer clock / steps), minimum over runs", "seconds"),
    "time_median": ("time per iteration, median over runs", "seconds"),
    "status": ("ok, the status a run ended with, or skipped and why", ""),
}
"""Column -> (description, unit): the one list of the columns of ``scaling.csv``."""

EXPONENT_COLUMNS = {
    "sweep": ("which size grows, and the problem", ""),
    "solver": ("solver name (optim.registry)", ""),
    "exponent": (f"b of t = a s^b, least squares on log-log over the {FIT_POINTS} largest", ""),
    "theory": ("b of the cost model (module doc) fitted over the same points", ""),
    "points": ("the sizes s the exponent was fitted on", ""),
    "exponent_all": ("b fitted over every measured size", ""),
    "points_all": ("every measured size", ""),
    "cost": ("leading flops of one iteration (P = K'(d + 1))", ""),
}
"""Column -> (description, unit) of the exponent table."""

TITLE = "Time per iteration as the data grow: synthetic logistic, float64, one BLAS thread"
EXPONENT_TITLE = "Fitted exponents b of time per iteration t = a s^b (s = n or d) and theory"
UNTUNED_NOTE = (
    "Every solver runs in its recommended configuration, untuned (momentum and adam at "
    "their default learning rates): the time of one iteration does not depend on the "
    "step size, so no search is needed to measure it."
)


# ----------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Cost:
    """Leading-order work of one iteration: ``text`` for people, ``flops(n, d, k)``
    (k = outputs K′) and the ``bytes(n, d, k)`` of the dense curvature it holds."""

    text: str
    flops: Callable[[int, int, int], float]
    bytes: Callable[[int, int, int], float] = lambda n, d, k: 0.0


def _grad(n, d, k):
    return 4.0 * n * k * (d + 1)


def _exact(n, d, k):
    p, rows = k * (d + 1), n * k
    return _grad(n, d, k) + min(rows * p**2 + p**3 / 3, rows**2 * p + rows**3 / 3)


def _factors(n, d, k):
    return n * (d + 1) ** 2 + n * k**2


_CG_MAXITER = RECOMMENDED["cg"]["cg_maxiter"]
_FIRST_ORDER = Cost("4 n P (loss and gradient)", _grad)
COSTS = {
    "exact": Cost(
        "4 n P + min(n K' P^2 + P^3/3, (n K')^2 P + (n K')^3/3)",
        _exact,
        lambda n, d, k: 8.0 * (k * (d + 1)) ** 2,
    ),
    "diag": Cost("6 n P", lambda n, d, k: 1.5 * _grad(n, d, k)),
    "kfac": Cost(
        "12 n P + n (d+1)^2 + n K'^2 + (d+1)^3 + K'^3",
        lambda n, d, k: 3 * _grad(n, d, k) + _factors(n, d, k) + (d + 1) ** 3 + k**3,
    ),
    "ekfac": Cost(
        "13 n P + 2 n ((d+1)^2 + K'^2) + 9 ((d+1)^3 + K'^3)",
        lambda n, d, k: 3.25 * _grad(n, d, k) + 2 * _factors(n, d, k) + 9 * ((d + 1) ** 3 + k**3),
    ),
    "cg": Cost(
        f"4 n P (1 + cg_maxiter), cg_maxiter = {_CG_MAXITER}",
        lambda n, d, k: (1 + _CG_MAXITER) * _grad(n, d, k),
    ),
    **dict.fromkeys(("gd", "momentum", "adam", "lbfgs"), _FIRST_ORDER),
}
"""Solver -> :class:`Cost` (module doc); one entry per solver of the registry."""


# ----------------------------------------------------------------------------- sweeps
@dataclass(frozen=True)
class Sweep:
    """Sizes of one sweep: ``vary`` ("n_samples" or "n_features") takes ``sizes``, the
    other size is ``fixed``; ``n_classes`` classes."""

    name: str
    vary: str
    sizes: tuple[int, ...]
    fixed: int
    n_classes: int = 2

    def __post_init__(self):
        check_choice(self.vary, "vary", ("n_samples", "n_features"))
        if len(self.sizes) < 2 or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(
                f"sweep {self.name!r}: expected at least 2 increasing sizes, got {self.sizes}."
            )
        for size in (*self.sizes, self.fixed, self.n_classes):
            check_positive_int(size, f"sweep {self.name!r} size")

    def describe(self) -> str:
        """The sweep in one line, e.g. "n_samples 1000 .. 100000 (5 sizes) at n_features =
        100, 2 classes"."""
        other = "n_features" if self.vary == "n_samples" else "n_samples"
        return (
            f"{self.vary} {self.sizes[0]} .. {self.sizes[-1]} ({len(self.sizes)} sizes) at "
            f"{other} = {self.fixed}, {self.n_classes} classes"
        )

    def shapes(self) -> list[tuple[int, int]]:
        """(n_samples, n_features) of every point, in order."""
        if self.vary == "n_samples":
            return [(s, self.fixed) for s in self.sizes]
        return [(self.fixed, s) for s in self.sizes]


def sweeps(quick: bool = False) -> list[Sweep]:
    """The sweeps of ``natgrad scaling`` (module doc); ``quick``: tiny sizes for CI."""
    if quick:
        return [
            Sweep("n, binary, d = 8", "n_samples", (100, 400), 8),
            Sweep("d, binary, n = 200", "n_features", (4, 16), 200),
            Sweep("n, 3 classes, d = 8", "n_samples", (100, 400), 8, 3),
        ]
    n_sizes = (1_000, 3_000, 10_000, 30_000, 100_000)
    return [
        Sweep("n, binary, d = 100", "n_samples", n_sizes, 100),
        Sweep("d, binary, n = 10000", "n_features", (10, 30, 100, 300, 1_000), 10_000),
        Sweep("n, 10 classes, d = 20", "n_samples", n_sizes, 20, 10),
    ]


def _problem(n_samples: int, n_features: int, n_classes: int) -> Problem:
    """The synthetic problem whose stratified training split has exactly ``n_samples``
    samples (scikit-learn holds out ceil(test_size · N) of N)."""
    base = Problem("scaling", "synthetic", n_samples=10, n_features=n_features)
    total = math.ceil(n_samples / (1 - base.test_size))
    while total - math.ceil(base.test_size * total) < n_samples:
        total += 1
    while total - 1 - math.ceil(base.test_size * (total - 1)) >= n_samples:
        total -= 1
    name = f"synthetic-n{n_samples}-d{n_features}-k{n_classes}"
    return Problem(
        name, "synthetic", n_samples=total, n_features=n_features, n_classes=n_classes, seed=SEED
    )


# ----------------------------------------------------------------------------- fit
def fit_exponent(sizes, times) -> tuple[float, float]:
    """(b, a) of t ≈ a·sᵇ: least squares of log t = log a + b·log s over the points.

    ``sizes`` and ``times``: positive, finite, the same length ≥ 2, at least two distinct
    sizes. Raises ValueError otherwise.
    """
    s, t = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
    if s.ndim != 1 or s.shape != t.shape:
        raise ValueError(
            f"sizes and times: expected two 1-d arrays of one length, got shapes "
            f"{s.shape} and {t.shape}."
        )
    if not (np.isfinite(s).all() and np.isfinite(t).all() and (s > 0).all() and (t > 0).all()):
        raise ValueError(f"sizes and times: expected positive finite values, got {s} and {t}.")
    if np.unique(s).size < 2:
        raise ValueError(f"sizes: expected at least 2 distinct values, got {s}.")
    b, log_a = np.polyfit(np.log(s), np.log(t), 1)
    return float(b), float(np.exp(log_a))


def exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, solver) of ``table`` (columns :data:`COLUMNS`) with ≥ 2 measured
    points: the measured and theory exponents (columns :data:`EXPONENT_COLUMNS`), to
    :data:`EXPONENT_DECIMALS` decimals."""
    rows = []
    for (sweep, solver), group in table.groupby(["sweep", "solver"], sort=False):
        ok = group[group["status"].eq("ok")]
        if len(ok) < 2:
            continue
        vary = _varied(group)
        top = ok.tail(FIT_POINTS)
        cost = COSTS[solver]
        rows.append(
            {
                "sweep": sweep,
                "solver": solver,
                "exponent": _rounded(fit_exponent(top[vary], top["time_min"])[0]),
                "theory": _rounded(fit_exponent(top[vary], top["model_flops"])[0]),
                "points": ", ".join(str(s) for s in top[vary]),
                "exponent_all": _rounded(fit_exponent(ok[vary], ok["time_min"])[0]),
                "points_all": ", ".join(str(s) for s in ok[vary]),
                "cost": cost.text,
            }
        )
    return pd.DataFrame(rows, columns=list(EXPONENT_COLUMNS))


def _rounded(b: float) -> float:
    return round(b, EXPONENT_DECIMALS)


def _varied(sweep: pd.DataFrame) -> str:
    """The size column that changes along the rows of one sweep."""
    return "n_samples" if sweep["n_samples"].nunique() > 1 else "n_features"


# ----------------------------------------------------------------------------- measure
def _skip_reason(solver: str, n: int, d: int, k: int, budgets: dict) -> str:
    cost = COSTS[solver]
    flops, nbytes = cost.flops(n, d, k), cost.bytes(n, d, k)
    if flops > budgets["flop_budget"]:
        return f"skipped: {flops:.2g} flops per iteration > budget {budgets['flop_budget']:.2g}"
    if nbytes > budgets["memory_budget"]:
        return f"skipped: curvature {nbytes:.3g} bytes > budget {budgets['memory_budget']:.3g}"
    return ""


def _time_point(data, solver: str, iterations: int, repeats: int) -> dict:
    per_iteration, steps, status = [], iterations, "ok"
    for _ in range(repeats):
        result = minimize(
            data.model,
            data.X_train,
            data.y_train,
            make_optimizer(solver),
            alpha=data.alpha,
            max_iter=iterations,
            tol=0.0,
            random_state=SEED,
        )  # inside run_scaling's one-thread limit
        if result.n_iter == 0:
            return {"status": f"failed: {result.status} before one step ({result.message})"}
        per_iteration.append(result.time / result.n_iter)
        steps = min(steps, result.n_iter)
        if result.status not in ("max_iter", "converged", "stalled"):
            status = f"{result.status}: {result.message}"
    return {
        "iterations": steps,
        "time_min": min(per_iteration),
        "time_median": float(np.median(per_iteration)),
        "status": status,
    }


def run_scaling(
    quick: bool = False,
    solvers=SOLVERS,
    iterations: int | None = None,
    repeats: int = REPEATS,
    selected: list[Sweep] | None = None,
    flop_budget: float = FLOP_BUDGET,
    memory_budget: float = MEMORY_BUDGET,
    on_sweep: Callable[[pd.DataFrame, dict], object] | None = None,
    progress: Callable[[str], object] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Measure every point of the sweeps (module doc, call order) with one BLAS thread.

    ``selected``: the sweeps (default :func:`sweeps` of ``quick``); ``iterations``:
    steps per timed run (default :data:`ITERATIONS`, 2 when quick); a point is skipped
    above ``flop_budget`` or ``memory_budget`` (bytes); ``on_sweep(table, record)`` is
    called with the table so far and the provenance after each sweep, ``progress(text)``
    before each point. Returns the table (columns :data:`COLUMNS`) and the provenance record
    (:func:`provenance.provenance` of the settings, its ``blas`` read inside the limit).
    """
    from .provenance import blas_in_force, provenance

    solvers = [check_choice(s, "solver", SOLVERS) for s in solvers]
    if not solvers:
        raise ValueError(f"solvers: expected some of {list(SOLVERS)}, got none.")
    if iterations is None:
        iterations = 2 if quick else ITERATIONS
    iterations = check_positive_int(iterations, "iterations")
    repeats = check_positive_int(repeats, "repeats")
    if repeats < REPEATS:
        raise ValueError(f"repeats must be >= {REPEATS}, got {repeats}.")
    budgets = {
        "flop_budget": check_nonnegative(flop_budget, "flop_budget"),
        "memory_budget": check_nonnegative(memory_budget, "memory_budget"),
    }
    selected = sweeps(quick) if selected is None else selected
    settings = {
        "quick": quick,
        "iterations": iterations,
        "repeats": repeats,
        "solvers": solvers,
        "sweeps": [vars(s) | {"sizes": list(s.sizes)} for s in selected],
        **budgets,
        "seed": SEED,
    }
    rows = []
    with limit_threads(1):
        record = provenance(settings) | {"blas": blas_in_force(), "settings": settings}
        for sweep in selected:
            for n, d in sweep.shapes():
                data = _problem(n, d, sweep.n_classes).load(SEED)
                k = data.model.n_outputs
                for solver in solvers:
                    row = {
                        "sweep": sweep.name,
                        "solver": solver,
                        "n_samples": data.X_train.shape[0],
                        "n_features": d,
                        "n_classes": sweep.n_classes,
                        "n_params": data.model.n_params,
                        "model_flops": COSTS[solver].flops(n, d, k),
                        "repeats": repeats,
                    }
                    reason = _skip_reason(solver, n, d, k, budgets)
                    if reason:
                        rows.append(row | {"iterations": 0, "status": reason})
                        continue
                    if progress is not None:
                        progress(f"{sweep.name}: {solver} at n = {n}, d = {d}")
                    rows.append(row | _time_point(data, solver, iterations, repeats))
            if on_sweep is not None:
                on_sweep(pd.DataFrame(rows, columns=list(COLUMNS)), record)
    return pd.DataFrame(rows, columns=list(COLUMNS)), record


# ----------------------------------------------------------------------------- write
def write_scaling(table: pd.DataFrame, out, record: dict, figure: bool = True) -> list[Path]:
    """Write ``table`` (from :func:`run_scaling`) under ``out``: ``scaling.csv`` and
    ``exponents.csv``, each with a JSON sidecar (column descriptions, provenance
    ``record``), Markdown and LaTeX, and (if ``figure``) ``scaling.png`` / ``.pdf``."""
    from .provenance import table_provenance
    from .report.tables import write_tables

    out = Path(out)
    table = table.copy()
    table.attrs = {
        "title": TITLE,
        "columns": COLUMNS,
        "key_columns": ["sweep", "solver", "n_samples", "n_features"],
        "notes": [UNTUNED_NOTE],
    }
    fitted = exponents(table)
    fitted.attrs = {
        "title": EXPONENT_TITLE,
        "columns": EXPONENT_COLUMNS,
        "key_columns": ["sweep", "solver"],
        "fit_points": FIT_POINTS,
        "notes": [UNTUNED_NOTE],
    }
    paths = write_tables({"scaling": table, "exponents": fitted}, out, table_provenance(record))
    return paths + (_figure(table, fitted, out / "scaling") if figure else [])


def _figure(table: pd.DataFrame, fitted: pd.DataFrame, stem: Path) -> list[Path]:
    """One log-log panel per sweep: time per iteration (minimum over runs) against the
    size the sweep varies, one line per solver in the report's solver styles
    (:func:`.report.figures.solver_styles`), its fitted exponent b in the legend."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report.figures import solver_styles

    names = list(dict.fromkeys(table["sweep"]))
    labels = pd.DataFrame({"solver": table["solver"].unique()})
    styles = solver_styles(labels.assign(algorithm=labels["solver"]))
    b = fitted.set_index(["sweep", "solver"])["exponent"]
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names), 5.2), layout="constrained", squeeze=False
    )
    for ax, name in zip(axes[0], names):
        sweep = table[table["sweep"].eq(name) & table["status"].eq("ok")]
        vary = _varied(table[table["sweep"].eq(name)])
        for solver, style in styles.items():
            points = sweep[sweep["solver"].eq(solver)]
            if points.empty:
                continue
            fit = b.get((name, solver), np.nan)
            label = f"{solver}, b = {fit:.2f}" if np.isfinite(fit) else solver
            line = style.line() | {"markevery": None}
            ax.plot(points[vary], points["time_min"], label=label, **line)
        ax.set(xscale="log", yscale="log", title=name, xlabel=vary)
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers: no mathtext to lay out
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncols=3)
        skipped = table[table["sweep"].eq(name) & table["status"].str.startswith("skipped")]
        if not skipped.empty:
            text = ", ".join(f"{r.solver} at {r[vary]}" for _, r in skipped.iterrows())
            ax.text(0.99, 0.01, f"skipped (budget): {text}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=6.5)  # fmt: skip
    axes[0][0].set_ylabel("seconds per iteration (minimum over runs)")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None})
    plt.close(fig)
    return paths
