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
3. ``time``     timeit-style: rounds of one batch of calls per side (enough for each batch
                to last ``min_time``; garbage collected before a batch and off inside it),
                ``time.perf_counter``; the sides are interleaved (each round times ours, the
                peer, then the floor or gradient below), so a slow phase of a shared machine
                hits them alike; at least ``repeats`` rounds, and more until every side has
                run ``min_total`` seconds; the minimum and median per call.
4. ``floor``    where one exists, the dense kernel the work cannot beat, timed with them:
                for exact natural-gradient fits of binary problems, our
                iterations × (one syrk of an (n_samples, n_features + 1) matrix + one
                Cholesky of its Gram matrix); for the exact NG step of an MLP, one syrk of
                the F-ordered (batch · n_classes, n_params) Jacobian + one Cholesky.
   ``gradient`` where a target compares against it, our own loss and gradient of the
                same objective at the same point, timed the same way.
5. ``verdict``  ratio = ours / peer (minima); versus_ratio = ours / the time the row's
                target compares against (``versus``: the peer, the floor or our gradient),
                met when versus_ratio ≤ the target (:data:`TARGETS`, the issue's targets,
                in one place).

Our side of every row is a :class:`Workload` built by :func:`ours_workloads` without
PyTorch, curvlinops or scikit-learn's private API, so that the asv benchmarks
(``bench/bench_peers.py``) time exactly what the table times. The MLP rows compare with
PyTorch (``torch``) and curvlinops (``curvlinops-for-pytorch``); each group is skipped with
a message naming the missing package.

A fit is timed as a user sees it: the whole ``minimize`` call (its per-iteration history
evaluation included) against the whole ``LogisticRegression.fit``. The peer
``LinearModelLoss`` is private scikit-learn API; its import is guarded and the
rows that need it are skipped with a message when it moves.
"""

from __future__ import annotations

import functools
import gc
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._threads import limit_threads
from .._validation import check_nonnegative, check_positive, check_positive_int
from ..curvature import KFAC, DenseFisher, ImplicitFisher, kfac_factors
from ..models.mlp import MLP, LogisticModel
from ..models.objective import Objective
from ..optim import RECOMMENDED, make_optimizer, minimize
from ..optim.sklearn_solvers import theta_from_estimator

__all__ = [
    "CHECK_RTOL",
    "COLUMNS",
    "MIN_REPEATS",
    "PEER_KFAC",
    "TARGETS",
    "VERSUS",
    "Comparison",
    "Workload",
    "check_loss_gradient",
    "check_objectives",
    "check_vectors",
    "comparisons",
    "measure",
    "ours_workloads",
    "run_peers",
    "sklearn_coef",
    "theta_from_estimator",
    "torch_layout",
    "torch_mlp",
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

MLP_ALPHA = 1e-4
"""L2 strength of the digits MLP fit: ``MLPClassifier``'s default ``alpha``, the same
convention as ours (``α ‖W‖² / (2 N)``, weights only; the row's check confirms it)."""
PEER_KFAC = {"solver": "kfac", "inv_period": 8}
"""Our configuration in the digits MLP fit: the keywords of :func:`make_optimizer` (other
settings go here and nowhere else; the row's label spells them out): the recommended
K-FAC with its factors and inverses recomputed every 8th step only (``inv_period``, the
amortization of Martens & Grosse 2015, §8). A refresh (the 10 output columns pulled back,
the factors' syrks, six eigendecompositions) costs about 1.7 steps without one (a
gradient, the two forward-mode passes of the quadratic model and the solve), so every 8th
step keeps it near a fifth of the run. The steps to the target hardly depend on the
period: 56 refreshing every step; over initializations 0-5, 44.3 on average every 5th,
43.3 every 6th, 44.7 every 8th, 48.5 every 10th step."""

VERSUS = {"peer": "peer_min", "floor": "floor", "our gradient": "gradient"}
"""What a target compares our time against -> the column holding that time: the peer's
minimum, the dense floor, or our own loss and gradient of the same objective."""
TARGETS = {
    "loss+gradient": (1.0, "peer"),
    "exact NG fit": (1.0, "peer"),
    "exact NG fit, binary": (0.7, "peer"),
    "CG NG fit": (1.0, "peer"),
    "L-BFGS fit": (1.1, "peer"),
    "MLP loss+gradient": (1.0, "peer"),
    "K-FAC update": (0.5, "peer"),
    "Fisher-vector product": (1.0, "our gradient"),
    "exact NG step": (1.5, "floor"),
    "MLP fit": (1.0, "peer"),
}
"""Kind of work -> (largest acceptable time ratio, what it is a ratio to: a key of
:data:`VERSUS`), issue 10's targets."""

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
    "gradient": (
        "our loss and gradient of the same objective, minimum (empty: not compared)",
        "seconds",
    ),
    "check": ("agreement of both sides before timing (ok, or FAILED and why)", ""),
    "versus": ("what the target compares ours against: peer, floor or our gradient", ""),
    "versus_ratio": ("ours_min / the minimum time named by versus", "ratio"),
    "target": ("largest acceptable versus_ratio", "ratio"),
    "met": ("yes when versus_ratio <= target; no when not, or when the check failed", ""),
}
"""Column -> (description, unit): the one list of the table's columns."""


TITLE = "natgrad and its peers: time per call, same data and objective, float64, one BLAS thread"


@dataclass(frozen=True)
class Workload:
    """Our side of one row: ``run()`` is the work timed (as ``Comparison.ours``).

    ``inputs`` holds what the peer side needs to compute the same thing (data, model,
    parameters, vectors); ``gradient``, if given, is our loss and gradient of the same
    objective at the same point (the reference of targets versus "our gradient").
    """

    work: str
    kind: str
    sizes: str
    name: str
    run: Callable[[], object]
    inputs: Mapping = field(default_factory=dict)
    gradient: Callable[[], object] | None = None


@dataclass(frozen=True)
class Comparison:
    """One row: ``ours()`` and ``peer()`` compute the same ``work``.

    ``check(ours_out, peer_out)`` returns ``(ok, text)``. ``floor``, if given, maps our
    warm-up output to ``(kernel, calls)``: the row's floor is ``calls`` times the time of
    ``kernel()``. ``gradient``, if given, is timed as the row's "our gradient" reference.
    A row whose target is versus the floor or our gradient must have that callable.
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
    gradient: Callable[[], object] | None = None

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise ValueError(f"kind must be one of {sorted(TARGETS)}, got {self.kind!r}.")
        needed = {"floor": self.floor, "our gradient": self.gradient}.get(self.versus, True)
        if needed is None:
            raise ValueError(
                f"a {self.kind!r} row is compared versus {self.versus}: expected its "
                f"{self.versus} callable, got None."
            )

    @property
    def target(self) -> float:
        return TARGETS[self.kind][0]

    @property
    def versus(self) -> str:
        return TARGETS[self.kind][1]


def _compare(ours: Workload, peer_name: str, peer, check, floor=None) -> Comparison:
    return Comparison(
        ours.work,
        ours.kind,
        ours.sizes,
        ours.name,
        peer_name,
        ours.run,
        peer,
        check,
        floor,
        ours.gradient,
    )


# ----------------------------------------------------------------------------- timing
def _timed(func) -> tuple[object, float]:
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


MAX_ROUNDS = 200
"""The most interleaved rounds :func:`measure` runs while gathering ``min_total`` seconds."""


def _repeat(
    sides: dict[str, tuple[Callable[[], object], float]],
    repeats: int,
    min_time: float,
    min_total: float = 0.0,
) -> dict[str, tuple[float, float]]:
    """(minimum, median) seconds per call of every side's function over the rounds,
    interleaved: each round times every side in turn, a batch of enough calls to last
    ``min_time`` judging by its first call's seconds, so that a slow phase of a shared
    machine hits every side alike. At least ``repeats`` rounds, and more (up to
    :data:`MAX_ROUNDS`) until every side has been timed for ``min_total`` seconds: the
    minimum of more samples is more likely to catch every side in a quiet phase. Garbage
    is collected before each batch (cycles left by one side are not paid by the next) and
    collection is off inside it. ``sides``: name → (function, seconds of its first call)."""
    numbers = {k: max(1, math.ceil(min_time / max(first, 1e-9))) for k, (_, first) in sides.items()}
    per_call: dict[str, list[float]] = {k: [] for k in sides}
    spent = dict.fromkeys(sides, 0.0)
    enabled = gc.isenabled()
    try:
        for round_ in range(MAX_ROUNDS):
            if round_ >= repeats and min(spent.values()) >= min_total:
                break
            for name, (func, _) in sides.items():
                gc.collect()
                gc.disable()
                start = time.perf_counter()
                for _ in range(numbers[name]):
                    func()
                seconds = time.perf_counter() - start
                gc.enable()
                per_call[name].append(seconds / numbers[name])
                spent[name] += seconds
    finally:  # as found, also when a side raised inside its batch
        if enabled:
            gc.enable()
        else:
            gc.disable()
    return {k: (min(v), statistics.median(v)) for k, v in per_call.items()}


def measure(
    comparison: Comparison,
    repeats: int = MIN_REPEATS,
    min_time: float = 0.2,
    min_total: float = 0.0,
) -> dict:
    """The table row of ``comparison`` (columns :data:`COLUMNS`; module doc, call order)."""
    repeats = check_positive_int(repeats, "repeats")
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be >= {MIN_REPEATS}, got {repeats}.")
    min_time = check_positive(min_time, "min_time")
    min_total = check_nonnegative(min_total, "min_total")
    c = comparison
    row = {
        "work": c.work,
        "sizes": c.sizes,
        "ours": c.ours_name,
        "peer": c.peer_name,
        **dict.fromkeys(("ours_min", "ours_median", "peer_min", "peer_median", "ratio"), np.nan),
        **dict.fromkeys(("floor", "gradient", "versus_ratio"), np.nan),
        "versus": c.versus,
        "target": c.target,
    }
    ours_out, ours_first = _timed(c.ours)
    peer_out, peer_first = _timed(c.peer)
    ok, row["check"] = c.check(ours_out, peer_out)
    if not ok:
        return row | {"met": "no"}
    sides = {"ours": (c.ours, ours_first), "peer": (c.peer, peer_first)}
    calls = {}
    references = {
        "floor": c.floor(ours_out) if c.floor is not None else None,
        "gradient": (c.gradient, 1) if c.gradient is not None else None,
    }
    for column, reference in references.items():
        if reference is not None:
            kernel, calls[column] = reference
            sides[column] = (kernel, _timed(kernel)[1])
    times = _repeat(sides, repeats, min_time, min_total)
    row["ours_min"], row["ours_median"] = times["ours"]
    row["peer_min"], row["peer_median"] = times["peer"]
    for column, n_calls in calls.items():
        row[column] = n_calls * times[column][0]
    row["ratio"] = row["ours_min"] / row["peer_min"]
    row["versus_ratio"] = row["ours_min"] / row[VERSUS[c.versus]]
    return row | {"met": "yes" if row["versus_ratio"] <= c.target else "no"}


# ----------------------------------------------------------------------------- checks
def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), np.finfo(float).tiny)


def _entrywise(a, b) -> float:
    """max |a - b| relative to the largest entry of either (same shapes)."""
    scale = max(np.abs(a).max(), np.abs(b).max(), np.finfo(float).tiny)
    return float(np.abs(a - b).max() / scale)


def check_loss_gradient(ours, peer) -> tuple[bool, str]:
    """``ours`` and ``peer`` are ``(loss, gradient)`` in the same layout: the losses agree
    to :data:`CHECK_RTOL` relative and every gradient entry to CHECK_RTOL · ‖∇L‖_∞."""
    (loss_a, grad_a), (loss_b, grad_b) = ours, peer
    grad_a, grad_b = np.asarray(grad_a, dtype=float), np.asarray(grad_b, dtype=float)
    if grad_a.shape != grad_b.shape:
        return False, f"FAILED: gradient shapes {grad_a.shape} vs {grad_b.shape}"
    d_loss, d_grad = _relative(loss_a, loss_b), _entrywise(grad_a, grad_b)
    ok = d_loss <= CHECK_RTOL and d_grad <= CHECK_RTOL
    text = f"loss rel. diff. {d_loss:.1e}, gradient {d_grad:.1e}"
    return ok, ("ok: " if ok else "FAILED: ") + text


def check_vectors(ours, peer) -> tuple[bool, str]:
    """Two vectors in the same layout agree entrywise to :data:`CHECK_RTOL` · their
    largest entry."""
    ours, peer = np.asarray(ours, dtype=float), np.asarray(peer, dtype=float)
    if ours.shape != peer.shape:
        return False, f"FAILED: shapes {ours.shape} vs {peer.shape}"
    d = _entrywise(ours, peer)
    ok = d <= CHECK_RTOL
    return ok, ("ok: " if ok else "FAILED: ") + f"vectors rel. diff. {d:.1e}"


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


def _shapes(quick: bool) -> dict[str, tuple[int, int, int] | None]:
    """Dataset name -> (n_samples, n_features, n_classes) of the synthetic ones, None for
    the bundled ones."""
    synthetic = (
        {"synthetic binary": (2000, 20, 2), "synthetic 5-class": (1000, 10, 5)}
        if quick
        else {"synthetic binary": (50_000, 200, 2), "synthetic 10-class": (20_000, 100, 10)}
    )
    return {"breast_cancer": None, "digits": None} | synthetic


@functools.cache
def _dataset(name: str, quick: bool) -> _Data:
    shape = _shapes(quick)[name]
    return _Data(name, *(_bundled(name) if shape is None else _synthetic(*shape)))


# ----------------------------------------------------------------------------- logistic
def sklearn_coef(model: LogisticModel, theta) -> np.ndarray:
    """``theta`` in ``LinearModelLoss``'s layout: (n_features + 1,) binary, (n_classes,
    n_features + 1) multinomial, intercept last."""
    (w_bar,) = model.unpack(theta)  # (n_features + 1, n_outputs), intercept row last
    return w_bar[:, 0].copy() if model.n_outputs == 1 else np.ascontiguousarray(w_bar.T)


def _linear_model_loss():
    """scikit-learn's private ``LinearModelLoss`` and its losses, or None if they moved."""
    try:
        from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
        from sklearn.linear_model._linear_loss import LinearModelLoss
    except ImportError:
        return None
    return LinearModelLoss, HalfBinomialLoss, HalfMultinomialLoss


def _loss_gradient(objective: Objective, theta) -> Callable[[], tuple[float, np.ndarray]]:
    """Our loss and gradient at ``theta``, recomputed from scratch on every call."""

    def run():
        objective.clear_cache()  # the memoized forward pass would skip half the work
        return objective.loss_and_grad(theta, count=False)

    return run


def _loss_gradient_workload(name: str, kind: str, quick: bool) -> Workload:
    data = _dataset(name, quick)
    model = LogisticModel(data.X.shape[1], data.n_classes)
    objective = Objective(model, data.X, data.y, alpha=ALPHA)
    theta = np.random.default_rng(0).normal(scale=0.1, size=model.n_params)
    return Workload(
        f"loss+gradient, {kind} logistic, {name}",
        "loss+gradient",
        data.sizes,
        "Objective.loss_and_grad",
        _loss_gradient(objective, theta),
        {"data": data, "model": model, "theta": theta},
    )


def _loss_gradient_row(ours: Workload) -> Comparison:
    LinearModelLoss, HalfBinomialLoss, HalfMultinomialLoss = _linear_model_loss()
    data, model, theta = (ours.inputs[k] for k in ("data", "model", "theta"))
    loss = LinearModelLoss(
        HalfBinomialLoss()
        if model.n_outputs == 1
        else HalfMultinomialLoss(n_classes=data.n_classes),
        fit_intercept=True,
    )
    coef, y_float = sklearn_coef(model, theta), data.y.astype(np.float64)
    l2 = ALPHA / data.X.shape[0]

    def peer():
        return loss.loss_gradient(coef, data.X, y_float, l2_reg_strength=l2, n_threads=1)

    def check(ours_out, peer_out):
        return check_loss_gradient((ours_out[0], sklearn_coef(model, ours_out[1])), peer_out)

    return _compare(ours, "sklearn LinearModelLoss.loss_gradient", peer, check)


SKLEARN_LBFGS_FTOL = 64 * float(np.finfo(np.float64).eps)
"""The relative-reduction stopping test scikit-learn's ``LogisticRegression`` gives
L-BFGS-B (``ftol``): it ends its lbfgs fits at ‖∇L‖_∞ ≈ 1e-8, before their gradient
tolerance; our L-BFGS row uses it too, so that the same scipy algorithm stops by the same
rules on both sides (with ftol = 0 ours goes on to 1e-9: 5-20% more iterations)."""

_FITS = (
    # (kind, our solver and hyperparameters, scikit-learn solver, our max_iter, its max_iter)
    ("exact NG fit", ("exact", {}), "newton-cholesky", 200, 1000),
    ("CG NG fit", ("cg", {}), "newton-cg", 500, 1000),
    ("L-BFGS fit", ("lbfgs", {"ftol": SKLEARN_LBFGS_FTOL}), "lbfgs", 10_000, 10_000),
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


def _fit_workload(
    name: str, quick: bool, kind: str, solver: tuple[str, dict], max_iter: int
) -> Workload:
    data = _dataset(name, quick)
    model = LogisticModel(data.X.shape[1], data.n_classes)
    solver, params = solver

    def run():
        optimizer = make_optimizer(solver, **params)
        return minimize(
            model, data.X, data.y, optimizer, alpha=ALPHA, tol=FIT_TOL, max_iter=max_iter
        )

    binary = model.n_outputs == 1
    call = ", ".join([repr(solver)] + [f"{k}={v:.2g}" for k, v in params.items()])
    return Workload(
        f"{kind}, {name}",
        "exact NG fit, binary" if solver == "exact" and binary else kind,
        data.sizes,
        f"minimize(make_optimizer({call}))",
        run,
        {"data": data, "model": model},
    )


def _fit_row(ours: Workload, sk_solver: str, sk_max_iter: int) -> Comparison:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    data, model = ours.inputs["data"], ours.inputs["model"]
    objective = Objective(model, data.X, data.y, alpha=ALPHA)
    estimator = LogisticRegression(
        C=1.0 / ALPHA, solver=sk_solver, tol=FIT_TOL / 10, max_iter=sk_max_iter
    )

    def peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return estimator.fit(data.X, data.y)

    def check(result, fitted):
        f_peer, g_peer = objective.loss_and_grad(theta_from_estimator(model, fitted), count=False)
        ok, text = check_objectives(result.loss, f_peer)
        return ok, (
            f"{text} (ours: {result.status} in {result.n_iter} iterations at ‖∇L‖∞ "
            f"{result.grad_norm:.1e}; theirs: {fitted.n_iter_[0]} at {np.abs(g_peer).max():.1e})"
        )

    floor = None
    if ours.kind == "exact NG fit, binary":

        def floor(result):
            return _syrk_cholesky(data.X.shape[0], model.n_params), result.n_iter

    return _compare(ours, f"sklearn LogisticRegression({sk_solver!r})", peer, check, floor)


# ----------------------------------------------------------------------------- MLP
def _mlp_sizes(quick: bool) -> tuple[tuple[int, int], ...]:
    """(hidden width H, batch) of the MLP 64-H-H-10 rows."""
    return ((8, 64),) if quick else ((32, 512), (128, 512))


def _mlp_problem(hidden: int, batch: int) -> tuple[MLP, Objective, np.ndarray, str]:
    """The digits MLP 64-H-H-10 tanh on the first ``batch`` samples, at its initialization:
    model, objective (alpha :data:`ALPHA`), theta and the sizes text."""
    X, y = _bundled("digits")
    X, y = X[:batch], y[:batch]
    model = MLP(X.shape[1], 10, (hidden, hidden), "tanh", "softmax")
    sizes = f"{X.shape[1]}-{hidden}-{hidden}-10 tanh, batch {batch}"
    return model, Objective(model, X, y, alpha=ALPHA), model.init_params(0), sizes


def _mlp_loss_gradient_workload(hidden: int, batch: int) -> Workload:
    model, objective, theta, sizes = _mlp_problem(hidden, batch)
    return Workload(
        f"MLP loss+gradient, digits MLP, H = {hidden}",
        "MLP loss+gradient",
        sizes,
        "Objective.loss_and_grad",
        _loss_gradient(objective, theta),
        {"model": model, "objective": objective, "theta": theta},
    )


def _kfac_update_workload(hidden: int, batch: int) -> Workload:
    """Type-2 K-FAC factors, the exact-damping inverse and its product with the gradient:
    the curvature work of one natgrad K-FAC step (damping: the recommended K-FAC's)."""
    model, objective, theta, sizes = _mlp_problem(hidden, batch)
    _, grad = objective.loss_and_grad(theta, count=False)
    damping = RECOMMENDED["kfac"]["damping"]

    def run():
        objective.clear_cache()
        factors = kfac_factors(objective, theta, "exact")
        return KFAC(objective, factors=factors, damping_mode="exact").solve(grad, damping)

    inputs = {"model": model, "objective": objective, "theta": theta, "vector": grad}
    return Workload(
        f"K-FAC update, digits MLP, H = {hidden}",
        "K-FAC update",
        sizes,
        "kfac_factors + KFAC.solve (exact damping)",
        run,
        inputs | {"damping": damping},
    )


def _fvp_workload(hidden: int, batch: int) -> Workload:
    """One exact Fisher-vector product as CG does it: the forward pass is cached at θ."""
    model, objective, theta, sizes = _mlp_problem(hidden, batch)
    fisher = ImplicitFisher(objective, theta, "exact")
    v = np.random.default_rng(1).normal(size=model.n_params)
    return Workload(
        f"Fisher-vector product, digits MLP, H = {hidden}",
        "Fisher-vector product",
        sizes,
        "ImplicitFisher @ v",
        lambda: fisher @ v,
        {"model": model, "objective": objective, "theta": theta, "vector": v},
        gradient=_loss_gradient(objective, theta),
    )


def _exact_step_workload(hidden: int, batch: int) -> Workload:
    """The dense true Fisher in parameter space and its damped Cholesky solve of the
    gradient: the curvature work of one exact natural-gradient step."""
    model, objective, theta, sizes = _mlp_problem(hidden, batch)
    _, grad = objective.loss_and_grad(theta, count=False)
    damping = RECOMMENDED["exact"]["damping"]

    def run():
        objective.clear_cache()
        fisher = DenseFisher(objective, theta, "exact", method="parameter")
        return fisher.solve(grad, damping)

    inputs = {"model": model, "objective": objective, "theta": theta, "vector": grad}
    return Workload(
        f"exact NG step, digits MLP, H = {hidden}",
        "exact NG step",
        f"{sizes}, P = {model.n_params:,}",
        "DenseFisher(method='parameter').solve",
        run,
        inputs | {"damping": damping},
    )


def _mlp_fit_setting(quick: bool) -> tuple[int, tuple[int, int]]:
    """(n_samples, hidden sizes) of the digits MLP fit: the full digits set and (128, 128),
    or a small one when quick."""
    return (300, (16, 16)) if quick else (1797, (128, 128))


def _mlp_classifier(hidden: tuple[int, int]):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=hidden,
        activation="tanh",
        solver="lbfgs",
        alpha=MLP_ALPHA,
        max_iter=100,
        tol=0.0,  # exactly 100 iterations: the "100-iteration loss" (its default
        # tol=1e-4 stops lbfgs after 15 on digits, at a 45x higher loss)
        random_state=0,
    )


def _fit_classifier(estimator, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@functools.cache
def _mlp_target(quick: bool) -> float:
    """The training objective ``MLPClassifier(solver='lbfgs', max_iter=100, tol=0)`` ends at
    (its ``loss_``): the loss our K-FAC fit runs to."""
    n_samples, hidden = _mlp_fit_setting(quick)
    X, y = _bundled("digits")
    return float(_fit_classifier(_mlp_classifier(hidden), X[:n_samples], y[:n_samples]).loss_)


def _mlp_fit_workload(quick: bool) -> Workload:
    """natgrad K-FAC (:data:`PEER_KFAC`), full batch, stopped the first time the full-data
    loss is at most the loss ``MLPClassifier`` (lbfgs, 100 iterations) ends at."""
    n_samples, hidden = _mlp_fit_setting(quick)
    X, y = _bundled("digits")
    X, y = X[:n_samples], y[:n_samples]
    model = MLP(X.shape[1], 10, hidden, "tanh", "softmax")
    target = _mlp_target(quick)

    def stop_at_target(theta, row):
        if row["loss"] <= target:
            raise StopIteration

    def run():
        return minimize(
            model,
            X,
            y,
            make_optimizer(**PEER_KFAC),
            alpha=MLP_ALPHA,
            max_iter=1000,
            tol=0.0,
            callback=stop_at_target,
            random_state=0,
        )

    width = "-".join(map(str, hidden))
    return Workload(
        "MLP fit to MLPClassifier's loss, digits",
        "MLP fit",
        f"{X.shape[1]}-{width}-10 tanh, {n_samples} samples, full batch",
        f"minimize(make_optimizer({_keywords(PEER_KFAC)})) to the same loss",
        run,
        {"model": model, "X": X, "y": y, "hidden": hidden},
    )


def _keywords(config: dict) -> str:
    """``make_optimizer``'s arguments for ``config``: the solver, then keyword=value."""
    rest = [f"{k}={v!r}" for k, v in config.items() if k != "solver"]
    return ", ".join([repr(config["solver"]), *rest])


def _mlp_fit_row(ours: Workload) -> Comparison:
    model, X, y = (ours.inputs[k] for k in ("model", "X", "y"))
    objective = Objective(model, X, y, alpha=MLP_ALPHA)
    estimator = _mlp_classifier(ours.inputs["hidden"])

    def peer():
        return _fit_classifier(estimator, X, y)

    def check(result, fitted):
        theta = theta_from_estimator(model, fitted)
        d = _relative(objective.loss(theta, count=False), fitted.loss_)
        reached = result.loss <= fitted.loss_ + CHECK_RTOL * abs(fitted.loss_)
        ok = d <= CHECK_RTOL and reached
        text = (
            f"our objective at MLPClassifier's weights = its loss_ to {d:.1e} rel.; ours "
            f"{'reached' if reached else 'did not reach'} its loss {fitted.loss_:.3g} "
            f"(iteration {result.n_iter}; MLPClassifier: {fitted.n_iter_}; different "
            "initializations: time to the same loss, not the same trajectory)"
        )
        return ok, ("ok: " if ok else "FAILED: ") + text

    return _compare(ours, "sklearn MLPClassifier(solver='lbfgs', max_iter=100, tol=0)", peer, check)


# ----------------------------------------------------------------------------- torch
def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _curvlinops():
    try:
        import curvlinops
    except ImportError:
        return None
    return curvlinops


def torch_layout(model: MLP, v) -> np.ndarray:
    """A vector in our layout (per layer one (fan_in + 1, fan_out) block [W; b], row-major)
    in the order of ``torch_mlp``'s parameters: per layer weight (fan_out, fan_in)
    row-major, then bias (fan_out,)."""
    return np.concatenate([np.r_[w_bar[:-1].T.ravel(), w_bar[-1]] for w_bar in model.unpack(v)])


def torch_mlp(model: MLP, theta):
    """Our tanh MLP as a float64 ``torch.nn.Sequential`` of ``Linear`` and ``Tanh`` with
    parameters ``theta``: (network, list of its parameters)."""
    import torch

    modules = []
    blocks = model.unpack(theta)
    for i, w_bar in enumerate(blocks):
        linear = torch.nn.Linear(*w_bar[:-1].shape, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w_bar[:-1].T.copy()))
            linear.bias.copy_(torch.from_numpy(w_bar[-1].copy()))
        modules += [linear, torch.nn.Tanh()] if i < len(blocks) - 1 else [linear]
    network = torch.nn.Sequential(*modules)
    return network, list(network.parameters())


def _mlp_loss_gradient_row(ours: Workload) -> Comparison:
    torch = _torch()
    model, objective, theta = (ours.inputs[k] for k in ("model", "objective", "theta"))
    X_t, y_t = torch.from_numpy(np.array(objective.X)), torch.from_numpy(objective.y)
    blocks = [torch.tensor(b, requires_grad=True) for b in model.unpack(theta)]

    def peer():
        a = X_t
        for i, w_bar in enumerate(blocks):
            z = a @ w_bar[:-1] + w_bar[-1]
            a = torch.tanh(z) if i < len(blocks) - 1 else z
        penalty = sum((w_bar[:-1] ** 2).sum() for w_bar in blocks)
        loss = torch.nn.functional.cross_entropy(a, y_t) + 0.5 * objective.l2 * penalty
        grads = torch.autograd.grad(loss, blocks)
        return float(loss.detach()), np.concatenate([g.numpy().ravel() for g in grads])

    return _compare(ours, "torch autograd", peer, check_loss_gradient)


def _curvlinops_setup(ours: Workload):
    """The torch network at our θ, its parameters, the data as curvlinops wants it, and
    the row's vector in torch's layout."""
    torch = _torch()
    model, objective, theta = (ours.inputs[k] for k in ("model", "objective", "theta"))
    network, params = torch_mlp(model, theta)
    data = [(torch.from_numpy(np.array(objective.X)), torch.from_numpy(objective.y))]
    vector = torch.from_numpy(torch_layout(model, ours.inputs["vector"]))
    return network, params, data, vector


def _torch_check(model: MLP):
    def check(ours_out, peer_out):
        return check_vectors(torch_layout(model, ours_out), peer_out)

    return check


def _kfac_update_row(ours: Workload) -> Comparison:
    """curvlinops' type-2 K-FAC, weight and bias as one block like ours, inverted with
    exact damping. Ours absorbs the L2 term into the damping (:mod:`..curvature.kfac`), so
    the peer's damping is ``l2 + damping``."""
    torch, curvlinops = _torch(), _curvlinops()
    network, params, data, grad = _curvlinops_setup(ours)
    loss_func = torch.nn.CrossEntropyLoss()
    damping = ours.inputs["objective"].l2 + ours.inputs["damping"]

    def peer():
        kfac = curvlinops.KFACLinearOperator(
            network,
            loss_func,
            params,
            data,
            fisher_type=curvlinops.FisherType.TYPE2,
            separate_weight_and_bias=False,
            check_deterministic=False,
        )
        inverse = curvlinops.KFACInverseLinearOperator(
            kfac, damping=damping, use_exact_damping=True
        )
        return (inverse @ grad).numpy()

    name = "curvlinops KFACLinearOperator + KFACInverseLinearOperator"
    return _compare(ours, name, peer, _torch_check(ours.inputs["model"]))


def _penalized_ggn(ours: Workload):
    """curvlinops' GGN of the data term and our L2 term's diagonal in torch's layout."""
    torch, curvlinops = _torch(), _curvlinops()
    network, params, data, vector = _curvlinops_setup(ours)
    ggn = curvlinops.GGNLinearOperator(
        network, torch.nn.CrossEntropyLoss(), params, data, check_deterministic=False
    )
    model, objective = ours.inputs["model"], ours.inputs["objective"]
    penalty = torch.from_numpy(objective.l2 * torch_layout(model, model.weight_mask()))
    return ggn, penalty, vector


def _fvp_row(ours: Workload) -> Comparison:
    ggn, penalty, v = _penalized_ggn(ours)

    def peer():
        return (ggn @ v + penalty * v).numpy()

    return _compare(
        ours, "curvlinops GGNLinearOperator @ v", peer, _torch_check(ours.inputs["model"])
    )


def _exact_step_row(ours: Workload) -> Comparison:
    torch = _torch()
    ggn, penalty, grad = _penalized_ggn(ours)
    n_params = grad.shape[0]
    shift = penalty + ours.inputs["damping"]

    def peer():
        matrix = ggn @ torch.eye(n_params, dtype=torch.float64)
        matrix.diagonal().add_(shift)
        factor = torch.linalg.cholesky(matrix)
        return torch.cholesky_solve(grad[:, None], factor)[:, 0].numpy()

    n_rows = ours.inputs["objective"].n_samples * ours.inputs["model"].n_outputs

    def floor(_):
        return _syrk_cholesky(n_rows, n_params), 1

    name = "curvlinops GGNLinearOperator @ I + torch Cholesky"
    return _compare(ours, name, peer, _torch_check(ours.inputs["model"]), floor)


# ----------------------------------------------------------------------------- suite
_SKIPPED = {
    "LinearModelLoss": (
        "loss+gradient rows: sklearn.linear_model._linear_loss.LinearModelLoss (private "
        "scikit-learn API) is not importable in this scikit-learn version"
    ),
    "torch": "PyTorch rows: torch is not installed (pip install -e '.[peers]' adds it)",
    "curvlinops": (
        "curvlinops rows (K-FAC update, Fisher-vector product, exact NG step): torch or "
        "curvlinops-for-pytorch is not installed (pip install -e '.[peers]' adds both)"
    ),
}
"""Peer package group -> the message printed when its rows are skipped."""


def _suite(quick: bool) -> list[tuple[str, Callable[[], Workload], str, Callable]]:
    """Every row in table order: (work label, builder of our workload, the peer's package
    group: "sklearn" or a key of :data:`_SKIPPED`, builder of the row from the workload)."""
    suite = [
        (
            f"loss+gradient, {kind} logistic, {name}",
            functools.partial(_loss_gradient_workload, name, kind, quick),
            "LinearModelLoss",
            _loss_gradient_row,
        )
        for name, kind in (("digits", "multinomial"), ("synthetic binary", "binary"))
    ]
    fitted = [name for name in _shapes(quick) if not (quick and name == "digits")]  # seconds
    for kind, solver, sk_solver, max_iter, sk_max_iter in _FITS:
        suite += [
            (
                f"{kind}, {name}",
                functools.partial(_fit_workload, name, quick, kind, solver, max_iter),
                "sklearn",
                functools.partial(_fit_row, sk_solver=sk_solver, sk_max_iter=sk_max_iter),
            )
            for name in fitted
        ]
    mlp_rows = (
        ("MLP loss+gradient", _mlp_loss_gradient_workload, "torch", _mlp_loss_gradient_row),
        ("K-FAC update", _kfac_update_workload, "curvlinops", _kfac_update_row),
        ("Fisher-vector product", _fvp_workload, "curvlinops", _fvp_row),
    )
    for work, build, group, row in mlp_rows:
        suite += [
            (f"{work}, digits MLP, H = {h}", functools.partial(build, h, b), group, row)
            for h, b in _mlp_sizes(quick)
        ]
    hidden, batch = _mlp_sizes(quick)[0]
    suite.append(
        (
            f"exact NG step, digits MLP, H = {hidden}",
            functools.partial(_exact_step_workload, hidden, batch),
            "curvlinops",
            _exact_step_row,
        )
    )
    suite.append(
        (
            "MLP fit to MLPClassifier's loss, digits",
            functools.partial(_mlp_fit_workload, quick),
            "sklearn",
            _mlp_fit_row,
        )
    )
    return suite


def ours_workloads(quick: bool = False) -> dict[str, Callable[[], Workload]]:
    """Our side of every row, by work label, as a builder each (data are loaded, and the
    MLPClassifier target fitted, only when a builder is called). Needs neither PyTorch,
    curvlinops nor scikit-learn's private API: ``bench/bench_peers.py`` times these, and
    :func:`comparisons` puts each beside its peer."""
    return {label: build for label, build, _, _ in _suite(quick)}


def comparisons(quick: bool = False) -> tuple[list[Comparison], list[str]]:
    """The rows to measure, and a message for each group skipped (its peer is missing).

    ``quick``: tiny sizes that run in seconds (for CI); otherwise the issue's sizes.
    """
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)
    available = {
        "sklearn": True,
        "LinearModelLoss": _linear_model_loss() is not None,
        "torch": torch is not None,
        "curvlinops": torch is not None and _curvlinops() is not None,
    }
    suite = _suite(quick)
    rows = [row(build()) for _, build, group, row in suite if available[group]]
    groups = dict.fromkeys(group for _, _, group, _ in suite)
    return rows, [_SKIPPED[g] for g in groups if not available[g]]


def run_peers(
    quick: bool = False,
    repeats: int = MIN_REPEATS,
    min_time: float | None = None,
    progress: Callable[[str], object] | None = None,
    min_total: float | None = None,
) -> tuple[pd.DataFrame, list[str], dict]:
    """Measure every row of :func:`comparisons` with one BLAS/OpenMP thread.

    Returns the table (columns :data:`COLUMNS`), the messages of the skipped groups, and
    the provenance of the measurement: :func:`provenance.provenance` (with the settings
    as its configuration) whose ``blas`` lists the pools as they were inside the limit.
    ``min_time`` (seconds per repeat) defaults to 0.01 when ``quick``, else 0.2;
    ``min_total`` (seconds per side, :func:`measure`) to 0 when ``quick``, else 3.
    ``progress``, if given, is called with each row's work before it is measured.
    """
    from .provenance import blas_in_force, provenance

    if min_time is None:
        min_time = 0.01 if quick else 0.2
    if min_total is None:
        min_total = 0.0 if quick else 3.0
    settings = {"quick": quick, "repeats": repeats, "min_time": min_time, "min_total": min_total}
    rows, skipped = comparisons(quick)  # imports torch first, so its pools are limited too
    with limit_threads(1):
        record = provenance(settings) | {"blas": blas_in_force(), "settings": settings}
        measured = []
        for comparison in rows:
            if progress is not None:
                progress(comparison.work)
            measured.append(measure(comparison, repeats, min_time, min_total))
    return pd.DataFrame(measured, columns=list(COLUMNS)), skipped, record


def write_peers(table: pd.DataFrame, out, skipped, record: dict) -> list[Path]:
    """Write ``table`` under ``out``: ``peers.csv`` (plain), ``peers.json`` (column
    descriptions, targets, skipped groups, provenance ``record`` from :func:`run_peers`),
    ``peers.md``, ``peers.tex`` and the figure ``peers.png`` (versus_ratio per row against
    its target)."""
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
    """One horizontal bar per row from parity (1) to versus_ratio (ours / the time the
    row's target compares against, named in its label) on a log axis, green where the
    target (a black tick) is met; rows whose check failed are labelled so."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table)
    fig, ax = plt.subplots(figsize=(10, 0.35 * n + 1.2), layout="constrained")
    y = np.arange(n)[::-1]
    ratio = table["versus_ratio"].to_numpy(dtype=float)
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
    labels = [
        f"{w} ({s}) vs {v}" for w, s, v in zip(table["work"], table["sizes"], table["versus"])
    ]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel('time natgrad / the reference after "vs" (minima)')
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, metadata={"Software": None})
    plt.close(fig)
    return path
