"""Shared set-up for the asv benchmarks (no benchmarks here).

Everything from ``natgrad_core`` is imported defensively: a name missing at an older commit
becomes ``None`` and the benchmarks that need it raise ``NotImplementedError`` in
``setup`` (asv then records them as skipped). Parameter values are plain strings; the
solver labels are those of the installed commit's recommended configurations.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS before the pin below)
import sklearn  # noqa: F401  (loads scikit-learn's OpenMP runtime before the pin below)

try:
    from natgrad_core._threads import limit_threads, threads_in_force
except ImportError:  # commits before natgrad_core._threads: pin with threadpoolctl itself
    from threadpoolctl import threadpool_limits as limit_threads

    threads_in_force = None
try:
    from natgrad_core.models.objective import Objective
except ImportError:
    Objective = None
try:
    from natgrad_core.curvature import KFAC, DenseFisher, ImplicitFisher, kfac_factors
except ImportError:
    KFAC = DenseFisher = ImplicitFisher = kfac_factors = None
try:
    from natgrad_core.optim import PRECONDITIONERS, make_optimizer, minimize
except ImportError:
    PRECONDITIONERS, make_optimizer = (), None
    minimize = None
try:
    from natgrad_core.benchmarking.problems import Problem, get_problem
except ImportError:
    Problem = get_problem = None
try:
    from natgrad_core.benchmarking.grid import DEFAULT_SOLVERS
except ImportError:
    DEFAULT_SOLVERS = None
try:  # natgrad's own algorithms (the shipped scikit-learn plugins have no step to time)
    from natgrad_core.benchmarking.grid import NATGRAD_SOLVERS
except ImportError:  # commits before plugins: every default solver is natgrad's own
    NATGRAD_SOLVERS = DEFAULT_SOLVERS


try:
    from natgrad_core.benchmarking.runner import RunSpec, execute
except ImportError:
    RunSpec = execute = None
try:
    from natgrad_core.benchmarking.peers import ours_workloads
except ImportError:  # commits before the peers rows had a torch-free side of their own
    ours_workloads = None

# Every BLAS and OpenMP pool at one thread, as the benchmark runner does: on a 2-core box a
# second BLAS thread made one exact step on wine-mlp ~25x slower. threadpoolctl reaches only
# the libraries already loaded, hence after all the imports above; the limiter stays alive
# for the life of the process (asv's forkserver children inherit it).
# asv.conf.json also sets the thread variables, but "-E existing" runs ignore them.
BLAS_PIN = limit_threads(1)

# NATGRAD_ASV_QUICK=1: the bench_peers rows at `natgrad peers --quick` sizes (seconds for the
# whole suite, for smoke runs such as the dashboard test); otherwise the sizes.
QUICK = os.environ.get("NATGRAD_ASV_QUICK", "") == "1"

# Problem sizes for the time_ benchmarks: n_params 15, 275 and 650.
SIZES = ("iris-logistic", "wine-mlp", "digits-logistic")
# The recommended configurations (natgrad_core.optim.registry.RECOMMENDED), read through
# DEFAULT_SOLVERS, which every benchmarked commit has: their labels, and the exact solver's
# damping for the curvature benchmarks. natgrad's own algorithms only: the shipped
# scikit-learn plugins have no step to time and no oracle counts to track (their speed is
# in the quick suite's tables, beside natgrad's).
SOLVER_LABELS = tuple(s.label for s in NATGRAD_SOLVERS or ())
DAMPING = next((s.kwargs["damping"] for s in NATGRAD_SOLVERS or () if s.solver == "exact"), None)
SEED = 0

# Problems that are not in the registry: for the memory benchmarks, one with far more
# parameters than Fisher rows (sample space wins) and one with far more rows (parameter
# space wins). Keyword arguments of natgrad_core.benchmarking.problems.Problem.
CUSTOM_PROBLEMS = {
    # P = 2001 parameters, R = 300 rows (binary: one output)
    "synthetic-n400-d2000-k2": dict(
        dataset="synthetic", n_samples=400, n_features=2000, n_classes=2
    ),
    # P = 153 parameters, R = 2250 rows (750 samples x 3 outputs)
    "synthetic-n1000-d50-k3": dict(dataset="synthetic", n_samples=1000, n_features=50, n_classes=3),
}


def require(*names):
    """Raise NotImplementedError (asv: skip) if any named feature is missing."""
    missing = [n for n in names if globals().get(n) is None]
    if missing:
        raise NotImplementedError(f"natgrad_core lacks {', '.join(missing)} at this commit")


@functools.cache
def load(problem: str):
    """The loaded ProblemData of a registry or CUSTOM_PROBLEMS name (cached per process)."""
    require("get_problem")
    if problem in CUSTOM_PROBLEMS:
        return Problem(problem, alpha=1.0, **CUSTOM_PROBLEMS[problem]).load()
    try:
        return get_problem(problem).load()
    except ValueError as exc:  # not in this commit's registry
        raise NotImplementedError(str(exc)) from None


def objective(problem: str):
    """A fresh Objective of the problem's full training set."""
    require("Objective")
    data = load(problem)
    return Objective(data.model, data.X_train, data.y_train, data.alpha)


def point(problem: str, seed: int = SEED):
    """A fixed, generic parameter vector: the model's initialization plus N(0, 0.1²)."""
    model = load(problem).model
    rng = np.random.default_rng(seed)
    return model.init_params(seed) + 0.1 * rng.standard_normal(model.n_params)


def cold(obj) -> None:
    """Forget the objective's memoized forward pass, so the next call at θ recomputes it
    (as at a new iterate of a real run). Commits before ``Objective.clear_cache`` existed
    kept the memo in ``_cached_theta``."""
    if hasattr(obj, "clear_cache"):
        obj.clear_cache()
    else:
        obj._cached_theta = None


def solver_config(label: str):
    """The SolverConfig with this label in DEFAULT_SOLVERS."""
    require("DEFAULT_SOLVERS")
    for config in DEFAULT_SOLVERS:
        if config.label == label:
            return config
    raise NotImplementedError(f"no solver {label!r} in DEFAULT_SOLVERS at this commit")


def optimizer_for(label: str):
    """A fresh optimizer for a DEFAULT_SOLVERS label (seeded like the runner does)."""
    require("make_optimizer")
    config = solver_config(label)
    kwargs = config.kwargs
    if config.solver in PRECONDITIONERS:
        kwargs.setdefault("random_state", SEED)
    return make_optimizer(config.solver, **kwargs)
