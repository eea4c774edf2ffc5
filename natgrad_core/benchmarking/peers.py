"""``natgrad peers``: natgrad side by side with what users would pick instead.

Each :class:`Comparison` is one row: a piece of work (a loss and gradient, a fit to
‖∇L‖_∞ ≤ 1e-9), our implementation, a peer's (scikit-learn; PyTorch when installed), and
the sizes. Both sides run in one process on the same float64 data and the same objective

    L(θ) = (1/N) Σₙ nll(zₙ(θ), yₙ) + α ‖W‖² / (2 N)

which is scikit-learn's ``LogisticRegression`` objective ``C Σₙ nll + ‖W‖²/2`` divided by
``C N`` with ``alpha = 1 / C`` (same minimizer), and ``LinearModelLoss`` with
``l2_reg_strength = α / N`` (same value). Every BLAS and OpenMP pool is limited to one
thread (:func:`natgrad_core._threads.limit_threads`; ``torch.set_num_threads(1)``).

:func:`measure`, per row, in call order:

1. ``warm-up``  one call of each side, timed; its outputs are what the check compares.
2. ``check``    both sides reach the same objective to :data:`CHECK_RTOL` relative (fits),
                or agree numerically (loss and gradient to :data:`CHECK_RTOL`); a row whose
                check fails gets no times, ratio or verdict.
3. ``time``     timeit-style: ``repeats`` repeats of ``number`` calls (enough for each
                repeat to last ``min_time``; garbage collection off), ``time.perf_counter``;
                the minimum and median per call over the repeats.
4. ``floor``    where one exists, the dense kernel the work cannot beat, timed the same way
                in the same run: for exact natural-gradient fits of binary problems, our
                iterations × (one syrk of an (n_samples, n_features + 1) matrix + one
                Cholesky of its Gram matrix).
5. ``verdict``  ratio = ours / peer (minima), met when ratio ≤ the row's target
                (:data:`TARGETS`, the issue's targets, in one place).

A fit is timed as a user sees it: the whole ``minimize`` call (its per-iteration history
evaluation included) against the whole ``LogisticRegression.fit``. The peer
``LinearModelLoss`` is private scikit-learn API; its import is guarded and the
rows that need it are skipped with a message when it moves.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._threads import limit_threads
from .._validation import check_positive, check_positive_int
from ..models.mlp import MLP, LogisticModel
from ..models.objective import Objective
from ..optim import make_optimizer, minimize

__all__ = [
    "CHECK_RTOL",
    "COLUMNS",
    "MIN_REPEATS",
    "TARGETS",
    "Comparison",
    "check_loss_gradient",
    "check_objectives",
    "comparisons",
    "measure",
    "run_peers",
    "sklearn_coef",
    "theta_from_estimator",
    "write_peers",
]

CHECK_RTOL = 1e-8
"""Relative agreement both sides must reach before their times are compared: the
objectives of two fits, or the loss and every gradient entry (relative to ‖∇L‖_∞)."""
MIN_REPEATS = 5
"""Fewest timing repeats: a minimum and a median need several."""
FIT_TOL = 1e-9
"""Fits run to ‖∇L‖_∞ ≤ FIT_TOL (ours); scikit-learn gets ``tol = FIT_TOL / 10``."""
ALPHA = 1.0
"""L2 strength of every row (scikit-learn ``C = 1 / ALPHA``), as the bundled problems."""

TARGETS = {
    "loss+gradient": 1.0,
    "exact NG fit": 1.0,
    "exact NG fit, binary": 0.7,
    "CG NG fit": 1.0,
    "L-BFGS fit": 1.1,
    "MLP loss+gradient": 1.0,
}
"""Kind of work -> largest acceptable time ratio ours / peer (issue 10's targets)."""

COLUMNS = {
    "work": ("what both sides compute", ""),
    "sizes": ("n_samples x n_features and classes, or architecture and batch", ""),
    "ours": ("natgrad's implementation", ""),
    "peer": ("the implementation users would pick instead", ""),
    "ours_min": ("our time per call, minimum over the repeats", "seconds"),
    "ours_median": ("our time per call, median over the repeats", "seconds"),
    "peer_min": ("the peer's time per call, minimum over the repeats", "seconds"),
    "peer_median": ("the peer's time per call, median over the repeats", "seconds"),
    "ratio": ("ours_min / peer_min", "ratio"),
    "floor": ("minimum time of the dense kernels of the same shapes (empty: none)", "seconds"),
    "check": ("agreement of both sides before timing (ok, or FAILED and why)", ""),
    "target": ("largest acceptable ratio", "ratio"),
    "met": ("yes when ratio <= target; no when not, or when the check failed", ""),
}
"""Column -> (description, unit): the one list of the table's columns."""


TITLE = "natgrad and its peers: time per call, same data and objective, float64, one BLAS thread"


@dataclass(frozen=True)
class Comparison:
    """One row: ``ours()`` and ``peer()`` compute the same ``work``.

    ``check(ours_out, peer_out)`` returns ``(ok, text)``. ``floor``, if given, maps our
    warm-up output to ``(kernel, calls)``: the row's floor is ``calls`` times the time of
    ``kernel()``.
    """

    work: str
    kind: str
    sizes: str
    ours_name: str
    peer_name: str
    ours: Callable[[], object]
    peer: Callable[[], object]
    check: Callable[[object, object], tuple[bool, str]]
    floor: Callable[[object], tuple[Callable[[], object], int]] | None = None

    @property
    def target(self) -> float:
        return TARGETS[self.kind]


# ----------------------------------------------------------------------------- timing
def _timed(func) -> tuple[object, float]:
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


def _repeat(func, first: float, repeats: int, min_time: float) -> tuple[float, float]:
    """(minimum, median) seconds per call of ``func`` over ``repeats`` repeats, each of
    enough calls to last ``min_time`` judging by one call of ``first`` seconds."""
    number = max(1, math.ceil(min_time / max(first, 1e-9)))
    per_call = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                func()
            per_call.append((time.perf_counter() - start) / number)
    finally:
        if enabled:
            gc.enable()
    return min(per_call), statistics.median(per_call)


def measure(comparison: Comparison, repeats: int = MIN_REPEATS, min_time: float = 0.2) -> dict:
    """The table row of ``comparison`` (columns :data:`COLUMNS`; module doc, call order)."""
    repeats = check_positive_int(repeats, "repeats")
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be >= {MIN_REPEATS}, got {repeats}.")
    min_time = check_positive(min_time, "min_time")
    c = comparison
    row = {
        "work": c.work,
        "sizes": c.sizes,
        "ours": c.ours_name,
        "peer": c.peer_name,
        **dict.fromkeys(("ours_min", "ours_median", "peer_min", "peer_median", "ratio"), np.nan),
        "floor": np.nan,
        "target": c.target,
    }
    ours_out, ours_first = _timed(c.ours)
    peer_out, peer_first = _timed(c.peer)
    ok, row["check"] = c.check(ours_out, peer_out)
    if not ok:
        return row | {"met": "no"}
    row["ours_min"], row["ours_median"] = _repeat(c.ours, ours_first, repeats, min_time)
    row["peer_min"], row["peer_median"] = _repeat(c.peer, peer_first, repeats, min_time)
    if c.floor is not None:
        kernel, calls = c.floor(ours_out)
        _, first = _timed(kernel)
        row["floor"] = calls * _repeat(kernel, first, repeats, min_time)[0]
    row["ratio"] = row["ours_min"] / row["peer_min"]
    return row | {"met": "yes" if row["ratio"] <= c.target else "no"}


# ----------------------------------------------------------------------------- checks
def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), np.finfo(float).tiny)


def check_loss_gradient(ours, peer) -> tuple[bool, str]:
    """``ours`` and ``peer`` are ``(loss, gradient)`` in the same layout: the losses agree
    to :data:`CHECK_RTOL` relative and every gradient entry to CHECK_RTOL · ‖∇L‖_∞."""
    (loss_a, grad_a), (loss_b, grad_b) = ours, peer
    grad_a, grad_b = np.asarray(grad_a, dtype=float), np.asarray(grad_b, dtype=float)
    if grad_a.shape != grad_b.shape:
        return False, f"FAILED: gradient shapes {grad_a.shape} vs {grad_b.shape}"
    d_loss = _relative(loss_a, loss_b)
    scale = max(np.abs(grad_a).max(), np.abs(grad_b).max(), np.finfo(float).tiny)
    d_grad = float(np.abs(grad_a - grad_b).max() / scale)
    ok = d_loss <= CHECK_RTOL and d_grad <= CHECK_RTOL
    text = f"loss rel. diff. {d_loss:.1e}, gradient {d_grad:.1e}"
    return ok, ("ok: " if ok else "FAILED: ") + text


def check_objectives(f_ours: float, f_peer: float) -> tuple[bool, str]:
    """Two fits reached the same objective value to :data:`CHECK_RTOL` relative."""
    d = _relative(f_ours, f_peer)
    ok = d <= CHECK_RTOL
    return ok, ("ok: " if ok else "FAILED: ") + f"objective rel. diff. {d:.1e}"


# ----------------------------------------------------------------------------- data
def _standardized(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return _standardized(X), y.astype(np.int64)


def _synthetic(n_samples: int, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples,
        n_features,
        n_informative=max(2, n_features // 2),
        n_classes=n_classes,
        random_state=0,
    )
    return _standardized(X), y.astype(np.int64)


@dataclass(frozen=True)
class _Data:
    name: str
    X: np.ndarray
    y: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1

    @property
    def sizes(self) -> str:
        n, d = self.X.shape
        return f"{n}x{d}, {self.n_classes} classes"


def _datasets(quick: bool) -> dict[str, _Data]:
    shapes = (
        {"synthetic binary": (2000, 20, 2), "synthetic 5-class": (1000, 10, 5)}
        if quick
        else {"synthetic binary": (50_000, 200, 2), "synthetic 10-class": (20_000, 100, 10)}
    )
    data = {name: _Data(name, *_bundled(name)) for name in ("breast_cancer", "digits")}
    data |= {name: _Data(name, *_synthetic(*shape)) for name, shape in shapes.items()}
    return data


# ----------------------------------------------------------------------------- logistic
def sklearn_coef(model: LogisticModel, theta) -> np.ndarray:
    """``theta`` in ``LinearModelLoss``'s layout: (n_features + 1,) binary, (n_classes,
    n_features + 1) multinomial, intercept last."""
    (w_bar,) = model.unpack(theta)  # (n_features + 1, n_outputs), intercept row last
    return w_bar[:, 0].copy() if model.n_outputs == 1 else np.ascontiguousarray(w_bar.T)


def theta_from_estimator(model: LogisticModel, estimator) -> np.ndarray:
    """A fitted ``LogisticRegression``'s coefficients as our ``theta``."""
    w_bar = np.vstack([estimator.coef_.T, estimator.intercept_[None, :]])
    return model.pack([w_bar])


def _linear_model_loss():
    """scikit-learn's private ``LinearModelLoss`` and its losses, or None if they moved."""
    try:
        from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
        from sklearn.linear_model._linear_loss import LinearModelLoss
    except ImportError:
        return None
    return LinearModelLoss, HalfBinomialLoss, HalfMultinomialLoss


def _loss_gradient_row(data: _Data) -> Comparison:
    LinearModelLoss, HalfBinomialLoss, HalfMultinomialLoss = _linear_model_loss()
    model = LogisticModel(data.X.shape[1], data.n_classes)
    objective = Objective(model, data.X, data.y, alpha=ALPHA)
    theta = np.random.default_rng(0).normal(scale=0.1, size=model.n_params)
    binary = model.n_outputs == 1
    loss = LinearModelLoss(
        HalfBinomialLoss() if binary else HalfMultinomialLoss(n_classes=data.n_classes),
        fit_intercept=True,
    )
    coef, y_float = sklearn_coef(model, theta), data.y.astype(np.float64)
    l2 = ALPHA / data.X.shape[0]

    def ours():
        objective.clear_cache()  # the memoized forward pass would skip half the work
        return objective.loss_and_grad(theta, count=False)

    def peer():
        return loss.loss_gradient(coef, data.X, y_float, l2_reg_strength=l2, n_threads=1)

    def check(ours_out, peer_out):
        return check_loss_gradient((ours_out[0], sklearn_coef(model, ours_out[1])), peer_out)

    kind = "binary" if binary else "multinomial"
    return Comparison(
        f"loss+gradient, {kind} logistic, {data.name}",
        "loss+gradient",
        data.sizes,
        "Objective.loss_and_grad",
        "sklearn LinearModelLoss.loss_gradient",
        ours,
        peer,
        check,
    )


_FITS = (
    # (kind, our solver, scikit-learn solver, our max_iter, scikit-learn max_iter)
    ("exact NG fit", "exact", "newton-cholesky", 200, 1000),
    ("CG NG fit", "cg", "newton-cg", 500, 1000),
    ("L-BFGS fit", "lbfgs", "lbfgs", 10_000, 10_000),
)
"""The fits compared, each on every logistic dataset (but digits when quick)."""


def _syrk_cholesky(n_rows: int, n_cols: int) -> Callable[[], object]:
    """One syrk AᵀA of an F-ordered (n_rows, n_cols) matrix and one Cholesky of the result:
    the least dense work of one exact Newton step of that Jacobian's shape."""
    from scipy.linalg.blas import dsyrk
    from scipy.linalg.lapack import dpotrf

    A = np.asfortranarray(np.random.default_rng(0).normal(size=(n_rows, n_cols)))

    def kernel():
        return dpotrf(dsyrk(1.0, A, trans=1), lower=0, overwrite_a=1)

    return kernel


def _fit_row(data: _Data, kind: str, solver: str, sk_solver: str, max_iter, sk_max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticModel(data.X.shape[1], data.n_classes)
    objective = Objective(model, data.X, data.y, alpha=ALPHA)
    estimator = LogisticRegression(
        C=1.0 / ALPHA, solver=sk_solver, tol=FIT_TOL / 10, max_iter=sk_max_iter
    )

    def ours():
        optimizer = make_optimizer(solver)
        return minimize(
            model, data.X, data.y, optimizer, alpha=ALPHA, tol=FIT_TOL, max_iter=max_iter
        )

    def peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return estimator.fit(data.X, data.y)

    def check(result, fitted):
        f_peer = objective.loss(theta_from_estimator(model, fitted), count=False)
        ok, text = check_objectives(result.loss, f_peer)
        return ok, f"{text} (ours: {result.status} in {result.n_iter} iterations)"

    floor = None
    binary = model.n_outputs == 1
    if solver == "exact" and binary:

        def floor(result):
            return _syrk_cholesky(data.X.shape[0], model.n_params), result.n_iter

    return Comparison(
        f"{kind}, {data.name}",
        "exact NG fit, binary" if solver == "exact" and binary else kind,
        data.sizes,
        f"minimize(make_optimizer({solver!r}))",
        f"sklearn LogisticRegression({sk_solver!r})",
        ours,
        peer,
        check,
        floor,
    )


# ----------------------------------------------------------------------------- MLP (torch)
def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _mlp_loss_gradient_row(torch, hidden: int, batch: int) -> Comparison:
    X, y = _bundled("digits")
    X, y = X[:batch], y[:batch]
    model = MLP(X.shape[1], 10, (hidden, hidden), "tanh", "softmax")
    objective = Objective(model, X, y, alpha=ALPHA)
    theta = model.init_params(0)
    l2 = ALPHA / batch
    blocks = [torch.tensor(b, requires_grad=True) for b in model.unpack(theta)]
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)

    def ours():
        objective.clear_cache()
        return objective.loss_and_grad(theta, count=False)

    def peer():
        a = X_t
        for i, w_bar in enumerate(blocks):
            z = a @ w_bar[:-1] + w_bar[-1]
            a = torch.tanh(z) if i < len(blocks) - 1 else z
        penalty = sum((w_bar[:-1] ** 2).sum() for w_bar in blocks)
        loss = torch.nn.functional.cross_entropy(a, y_t) + 0.5 * l2 * penalty
        grads = torch.autograd.grad(loss, blocks)
        return float(loss.detach()), np.concatenate([g.numpy().ravel() for g in grads])

    return Comparison(
        f"MLP loss+gradient, digits, H = {hidden}",
        "MLP loss+gradient",
        f"64-{hidden}-{hidden}-10 tanh, batch {batch}",
        "Objective.loss_and_grad",
        "torch autograd",
        ours,
        peer,
        check_loss_gradient,
    )


# ----------------------------------------------------------------------------- suite
def comparisons(quick: bool = False) -> tuple[list[Comparison], list[str]]:
    """The rows to measure, and a message for each group skipped (its peer is missing).

    ``quick``: tiny sizes that run in seconds (for CI); otherwise the issue's sizes.
    """
    data = _datasets(quick)
    rows, skipped = [], []
    if _linear_model_loss() is None:
        skipped.append(
            "loss+gradient rows: sklearn.linear_model._linear_loss.LinearModelLoss (private "
            "scikit-learn API) is not importable in this scikit-learn version"
        )
    else:
        binary = "synthetic binary"
        rows += [_loss_gradient_row(data["digits"]), _loss_gradient_row(data[binary])]
    fitted = [d for d in data.values() if not (quick and d.name == "digits")]  # seconds
    for fit in _FITS:
        rows += [_fit_row(d, *fit) for d in fitted]
    torch = _torch()
    if torch is None:
        skipped.append("PyTorch rows: torch is not installed (pip install -e '.[peers]' adds it)")
    else:
        torch.set_num_threads(1)
        sizes = ((8, 64),) if quick else ((32, 512), (128, 512))
        rows += [_mlp_loss_gradient_row(torch, h, b) for h, b in sizes]
    return rows, skipped


def run_peers(
    quick: bool = False,
    repeats: int = MIN_REPEATS,
    min_time: float | None = None,
    progress: Callable[[str], object] | None = None,
) -> tuple[pd.DataFrame, list[str], dict]:
    """Measure every row of :func:`comparisons` with one BLAS/OpenMP thread.

    Returns the table (columns :data:`COLUMNS`), the messages of the skipped groups, and
    the provenance of the measurement: :func:`provenance.provenance` (with the settings
    as its configuration) whose ``blas`` lists the pools as they were inside the limit.
    ``min_time`` (seconds per repeat) defaults to 0.01 when ``quick``, else 0.2.
    ``progress``, if given, is called with each row's work before it is measured.
    """
    from .provenance import blas_in_force, provenance

    if min_time is None:
        min_time = 0.01 if quick else 0.2
    settings = {"quick": quick, "repeats": repeats, "min_time": min_time}
    rows, skipped = comparisons(quick)  # imports torch first, so its pools are limited too
    with limit_threads(1):
        record = provenance(settings) | {"blas": blas_in_force(), "settings": settings}
        measured = []
        for comparison in rows:
            if progress is not None:
                progress(comparison.work)
            measured.append(measure(comparison, repeats, min_time))
    return pd.DataFrame(measured, columns=list(COLUMNS)), skipped, record


def write_peers(table: pd.DataFrame, out, skipped, record: dict) -> list[Path]:
    """Write ``table`` under ``out``: ``peers.csv`` (plain), ``peers.json`` (column
    descriptions, targets, skipped groups, provenance ``record`` from :func:`run_peers`),
    ``peers.md``, ``peers.tex`` and the figure ``peers.png`` (ratio per row against its
    target)."""
    from .provenance import table_provenance
    from .report.tables import write_tables

    out = Path(out)
    table = table.copy()
    table.attrs = {
        "title": TITLE,
        "columns": COLUMNS,
        "key_columns": ["work", "sizes"],
        "skipped": list(skipped),
        "check_rtol": CHECK_RTOL,
        "targets": TARGETS,
    }
    paths = write_tables({"peers": table}, out, table_provenance(record))
    paths.append(_figure(table, out / "peers.png"))
    return paths


def _figure(table: pd.DataFrame, path: Path) -> Path:
    """One horizontal bar per row from parity (1) to ours / peer on a log axis, green
    where the target (a black tick) is met; rows whose check failed are labelled so."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table)
    fig, ax = plt.subplots(figsize=(8, 0.35 * n + 1.2), layout="constrained")
    y = np.arange(n)[::-1]
    ratio = table["ratio"].to_numpy(dtype=float)
    met = table["met"].eq("yes").to_numpy()
    drawn = np.isfinite(ratio)
    colors = np.where(met[drawn], "#2ca02c", "#d62728")
    ax.barh(y[drawn], ratio[drawn] - 1.0, left=1.0, color=colors)  # from parity to the ratio
    ax.scatter(table["target"], y, marker="|", s=200, color="black", zorder=3, label="target")
    for yi in y[~drawn]:
        ax.text(1.0, yi, "check failed", va="center", ha="center", fontsize=8)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(y, [f"{w} ({s})" for w, s in zip(table["work"], table["sizes"])], fontsize=7)
    ax.set_xlabel("time natgrad / peer (minima; < 1: natgrad faster)")
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, metadata={"Software": None})
    plt.close(fig)
    return path
