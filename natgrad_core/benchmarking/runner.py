"""Run the grid: one run = (problem, solver configuration, seed).

A convergence curve comes from *one* run, recorded by the driver's callback after every
iteration — never by restarting the solver with larger budgets (as benchopt does). The
driver's clock runs only inside optimizer steps; everything the callback evaluates
(suboptimality, test metric, fidelity) is outside it. Before the timed run, one untimed
warm-up step primes caches and BLAS. BLAS threads are pinned with threadpoolctl for the
whole run and recorded, as are the number of runs sharing the machine and the machine's
id (:func:`provenance.machine_id`).

Each run also counts what its steps went through (from the per-step ``step_status``):
steps not taken, CG solves stopped at their cap, jitter / pseudo-inverse fallbacks; and it
is flagged when its loss ends above its start or most of its steps were not taken, so a
run that "finished" without making progress never reads as a success.

Every run also returns its record (``frame.attrs["run_record"]``, stored by
:meth:`store.ResultsStore.write_run` as ``runs/<run_key>.json``): its run key and
configuration id, the resolved configuration and budget, and the environment of
:func:`provenance.environment` captured inside the run's thread limit (``limit_threads``), so
the BLAS threads recorded are those in force during the run.

Runs stop on max_iter, the target suboptimality, the gradient tolerance, a per-run time
limit, or divergence. Any exception is caught and recorded as status "error" with its
message, so one bad configuration never loses the grid.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from .._threads import limit_threads
from .._validation import SingularCurvatureWarning
from ..curvature import DenseFisher
from ..models.objective import Objective
from ..optim import make_optimizer, minimize
from ..optim.base import BudgetedSolver
from ..optim.registry import resolved_params, solver_identity, takes_seed
from .problems import Problem, ProblemData
from .provenance import code_version, config_hash, environment, machine_id
from .reference import Reference, ReferenceSpec, reference_solution
from .store import NOT_APPLICABLE, SCHEMA, SCHEMA_VERSION, conform

__all__ = ["RunSpec", "SolverConfig", "execute"]

# Dense algebra needing more than this many bytes is skipped as infeasible, not attempted.
DENSE_MEMORY_LIMIT = 2 * 1024**3
DENSE_FLOP_LIMIT = 2e11
# Fidelity needs one dense natural-gradient solve per iteration: only for small problems.
FIDELITY_MAX_PARAMS = 400
FIDELITY_DAMPING = 1e-4
# Per-step statuses (see optim.base.StepInfo) counted per run: steps not taken (θ unchanged),
# CG solves stopped at their cap, solves that fell back from Cholesky. A step whose solve fell
# back *and* was rejected records only the fallback, so a step is also counted as not taken
# when its step size is 0.
REJECTED_STEPS = ("rejected", "line_search_failed", "not_descent")
CG_CAPPED_STEPS = ("max_cg_iter",)
FALLBACK_STEPS = ("jitter", "pinv")
MOSTLY_REJECTED = 0.5
"""A run is flagged ``mostly_rejected`` when more than this fraction of its steps were not
taken."""


@dataclass(frozen=True)
class SolverConfig:
    """A labelled solver with its hyperparameters (keyword arguments of make_optimizer).

    ``solver`` is a natgrad algorithm, a shipped plugin (sklearn-*), an import path
    ``"package.module:Factory"`` or an installed ``natgrad.solvers`` entry point; a plugin
    that cannot be imported or constructed raises ValueError naming it.

    ``batch_size``: the mini-batch size of this solver's runs, overriding the grid's
    (None: the grid's); it is a knob a tuning search may choose (see :mod:`.tuning`).
    """

    label: str
    solver: str
    params: tuple = ()
    batch_size: int | None = None

    def __post_init__(self):
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(
                f"solver {self.label!r}: batch_size must be an integer >= 1 or None (the "
                f"grid's), got {self.batch_size!r}."
            )
        try:  # made, and its configuration resolved to JSON, once up front
            resolved_params(self.solver, **self.kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"solver {self.label!r}: {exc}") from None

    @classmethod
    def make(cls, label: str, solver: str, batch_size: int | None = None, **params) -> SolverConfig:
        return cls(label, solver, tuple(sorted(params.items())), batch_size)

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    def run_kwargs(self, seed: int) -> dict:
        """The keywords of make_optimizer for a run with this seed: natural gradient's
        Monte-Carlo labels (and any plugin's ``random_state``) follow the run seed unless
        ``random_state`` is set."""
        kwargs = self.kwargs
        if takes_seed(self.solver):
            kwargs.setdefault("random_state", seed)
        return kwargs

    def resolved(self, seed: int | None = None) -> dict:
        """Every hyperparameter of the optimizer, defaults included (JSON-serializable;
        see :func:`~natgrad_core.optim.registry.resolved_params`), for a run with ``seed``."""
        kwargs = self.kwargs if seed is None else self.run_kwargs(seed)
        return resolved_params(self.solver, **kwargs)

    def identity(self) -> dict | None:
        """The plugin's identity (import path, package, version, source hash; see
        :mod:`natgrad_core.plugins`), None for natgrad's own algorithms."""
        return solver_identity(self.solver)

    def to_dict(self) -> dict:
        out = {"label": self.label, "solver": self.solver, "params": self.kwargs}
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        return out


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run (and therefore its key)."""

    problem: Problem
    solver: SolverConfig
    seed: int
    max_iter: int = 100
    time_limit: float = 60.0
    target_suboptimality: float = 1e-10
    tol: float = 1e-10
    batch_size: int | None = None
    fidelity: bool = True
    epochs: int | None = None
    record_every: int = 1
    reference: ReferenceSpec | None = None
    dense_flop_limit: float = DENSE_FLOP_LIMIT
    records_per_epoch: int | None = None

    def config(self) -> dict:
        config = {
            "problem": self.problem.to_dict(),
            "solver": self.solver.to_dict(),
            "seed": self.seed,
            "max_iter": self.max_iter,
            "time_limit": self.time_limit,
            "target_suboptimality": self.target_suboptimality,
            "tol": self.tol,
            "batch_size": self.batch_size,
            "fidelity": self.fidelity,
        }
        # only where set, so the keys of grids that use none of them stay as they were
        if self.epochs is not None:
            config["epochs"] = self.epochs
        if self.record_every != 1:
            config["record_every"] = self.record_every
        if self.records_per_epoch is not None:
            config["records_per_epoch"] = self.records_per_epoch
        if self.reference is not None and not self.problem.convex:
            config["reference"] = self.reference.to_dict()
        if self.dense_flop_limit != DENSE_FLOP_LIMIT:
            config["dense_flop_limit"] = self.dense_flop_limit
        return config

    def record_interval(self, n_train: int) -> int:
        """Steps between full-data records: ``record_every``, or with
        ``records_per_epoch`` that many records per pass over the data (at least one
        step apart), so that recording costs the same share of every problem."""
        if self.records_per_epoch is None:
            return self.record_every
        return max(1, self._steps_per_epoch(n_train) // self.records_per_epoch)

    def updates(self, n_train: int) -> int:
        """The run's budget in optimizer steps: ``max_iter``, or with ``epochs`` that many
        passes over the ``n_train`` training samples in batches of ``batch_size``
        (⌈n_train / batch_size⌉ steps each; full batch: one step per epoch)."""
        if self.epochs is None:
            return self.max_iter
        return self.epochs * self._steps_per_epoch(n_train)

    def _steps_per_epoch(self, n_train: int) -> int:
        """⌈n_train / batch_size⌉ (1 for the full batch)."""
        return -(-n_train // (self.batch_size or n_train))

    def resolved_config(self) -> dict:
        """:meth:`config` with the solver's hyperparameters fully resolved: every
        constructor parameter, defaults included (:meth:`SolverConfig.resolved`; a
        ``random_state`` of None means "follows the run seed"). Runs are keyed, recorded
        and pooled by it, so two spellings of one configuration are one configuration."""
        config = self.config()
        config["solver"] = {**config["solver"], "params": self.solver.resolved()}
        identity = self.solver.identity()
        if identity is not None:  # a resume never mixes two versions of a plugin
            config["solver"]["plugin"] = identity
        return config

    def config_id(self, resolved: dict | None = None) -> str:
        """Hash of :meth:`resolved_config` (or ``resolved``, already computed) without
        problem and seed: runs that differ only in those share it, and only such runs are
        summarized together."""
        resolved = self.resolved_config() if resolved is None else resolved
        return config_hash({k: v for k, v in resolved.items() if k not in ("problem", "seed")})

    def key(self, resolved: dict | None = None) -> str:
        """Hash of the configuration and the code version; independent of grid order."""
        resolved = self.resolved_config() if resolved is None else resolved
        return config_hash({"config": resolved, "code": code_version()})

    def record(self) -> dict:
        """The run's record: key, configuration id and configuration, and the
        :func:`provenance.environment` at the time of the call."""
        resolved = self.resolved_config()
        return {
            "run_key": self.key(resolved),
            "config_id": self.config_id(resolved),
            "configuration": resolved,
            **environment(),
        }


def _infeasible(spec: RunSpec, data: ProblemData) -> str | None:
    if spec.solver.solver != "exact":
        return None
    n_rows = data.model.n_outputs * (spec.batch_size or data.X_train.shape[0])
    size = min(data.model.n_params, n_rows)
    if 8 * size * size > DENSE_MEMORY_LIMIT:
        return (
            f"exact Fisher needs a {size}x{size} float64 matrix "
            f"({8 * size * size / 1024**3:.1f} GiB > {DENSE_MEMORY_LIMIT / 1024**3:.0f} GiB)"
        )
    # building the matrix costs ~ n_rows·P² (parameter space) or n_rows²·P (sample space)
    flops = n_rows * data.model.n_params * size
    if flops > spec.dense_flop_limit:
        seconds = flops / 1e10  # about 10 GFLOP/s on one core of the machines we measured
        return (
            f"one exact Fisher step needs ~{flops:.1e} flops (> the grid's dense_flop_limit "
            f"{spec.dense_flop_limit:.0e}; ~{seconds:.2g} s per step at 10 GFLOP/s)"
        )
    return None


def _gradient_time(objective, theta, repeats: int = 5) -> float:
    """Median wall time of one uncounted gradient evaluation of ``objective`` (the run's
    batch: the cost unit)."""
    times = []
    for _ in range(repeats):
        objective.clear_cache()  # force a fresh forward pass each time
        t0 = time.perf_counter()
        objective.loss_and_grad(theta, count=False)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _test_metric(data: ProblemData, theta) -> float:
    z = data.model.predict_outputs(theta, data.X_test)
    if data.problem.model == "autoencoder":
        return float(np.mean((z - data.y_test) ** 2))
    if z.shape[1] == 1:
        pred = (z[:, 0] > 0).astype(int)
    else:
        pred = np.argmax(z, axis=1)
    return float(np.mean(pred == data.y_test))


class _Recorder:
    """The driver callback: adds columns, stops at the target (outside the clock)."""

    def __init__(self, spec: RunSpec, data: ProblemData, ref: Reference, objective):
        self.spec, self.data, self.ref, self.objective = spec, data, ref, objective
        self.previous = None
        self.reached_target = False
        small = data.model.n_params <= FIDELITY_MAX_PARAMS
        self.fidelity = spec.fidelity and small

    def _fidelity(self, theta, damping) -> float:
        if not self.fidelity:
            return np.nan
        prev, self.previous = self.previous, theta.copy()
        if prev is None:
            return np.nan
        step = theta - prev
        if not np.any(step):
            return np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularCurvatureWarning)
            _, grad = self.objective.loss_and_grad(prev, count=False)
            op = DenseFisher(self.objective, prev, "exact", method="parameter")
            direction = -op.solve(grad, damping)
        denom = np.linalg.norm(step) * np.linalg.norm(direction)
        return float(step @ direction / denom) if denom > 0 else np.nan

    def __call__(self, theta, row):
        # compare with the exact direction at the damping the step used (the default
        # damping for undamped baselines), so fidelity measures the curvature, not λ
        damping = row.get("damping", np.nan)
        damping = damping if np.isfinite(damping) and damping > 0 else FIDELITY_DAMPING
        out = {
            "test_metric": _test_metric(self.data, theta),
            "fidelity": self._fidelity(theta, damping),
        }
        out["reference_loss"] = self.ref.loss
        if self.ref.kind == "long run":
            # measured against the long reference run: recorded, never a stopping rule
            # (a run may end below it; the report takes the lower of the two)
            sub = row["loss"] - self.ref.loss
            out["suboptimality"] = sub
            out["rel_suboptimality"] = sub / abs(self.ref.loss) if self.ref.loss else np.nan
        elif self.ref.kind == "exact":
            sub = row["loss"] - self.ref.loss
            out["suboptimality"] = sub
            out["rel_suboptimality"] = sub / abs(self.ref.loss) if self.ref.loss else np.nan
            out["dist_to_opt"] = float(np.linalg.norm(theta - self.ref.theta))
            if sub <= self.spec.target_suboptimality:
                self.reached_target = True
                row.update(out)
                raise StopIteration
        return out


def _step_diagnostics(frame: pd.DataFrame) -> dict:
    """Run-level counts of the per-step statuses and the run's flags (store.SCHEMA)."""
    taken = frame["iteration"] > 0
    steps = frame.loc[taken, "step_status"]
    n_rejected = int((steps.isin(REJECTED_STEPS) | (frame.loc[taken, "step_size"] == 0)).sum())
    flags = []
    loss = frame["loss"].to_numpy(dtype=np.float64)
    if loss.size > 1 and not loss[-1] <= loss[0]:  # NaN at the end counts as above
        flags.append("loss_increased")
    if n_rejected > MOSTLY_REJECTED * len(steps):
        flags.append("mostly_rejected")
    return {
        "n_rejected": n_rejected,
        "n_cg_capped": int(steps.isin(CG_CAPPED_STEPS).sum()),
        "n_fallbacks": int(steps.isin(FALLBACK_STEPS).sum()),
        "flags": ";".join(flags),
    }


def _flop_units(spec, data) -> dict:
    """grad_flops and backprop_flops of the run's batch (0 when the problem never loaded)."""
    if data is None:
        return {"grad_flops": 0, "backprop_flops": 0}
    flops = data.model.pass_flops(spec.batch_size or data.X_train.shape[0])
    return {"grad_flops": flops.gradient, "backprop_flops": flops.propagation}


def _frame(
    spec,
    record,
    data,
    rows,
    status,
    message,
    n_concurrent,
    blas_threads,
    grad_time=np.nan,
    curve="run",
):
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(
            {"iteration": [0], "loss": [np.nan], "step_size": [np.nan], "status": [""]}
        )
    frame = frame.rename(columns={"status": "step_status"})
    constants = {
        "schema_version": SCHEMA_VERSION,
        "run_key": record["run_key"],
        "config_id": record["config_id"],
        "code_version": code_version(),
        "problem": spec.problem.name,
        "convex": spec.problem.convex,
        "n_params": data.model.n_params if data is not None else 0,
        "n_train": data.X_train.shape[0] if data is not None else 0,
        "solver": spec.solver.label,
        "algorithm": spec.solver.solver,
        "params": json.dumps(spec.solver.kwargs, sort_keys=True),
        "seed": spec.seed,
        "batch_size": spec.batch_size or 0,
        "status": status,
        "message": message,
        "n_concurrent": n_concurrent,
        "blas_threads": blas_threads,
        "grad_time": grad_time,
        "machine": machine_id(),
        "curve": curve,
        **_step_diagnostics(frame),
        **_flop_units(spec, data),
    }
    for col, value in constants.items():
        frame[col] = value
    for col, (dtype, _) in SCHEMA.items():
        if col not in frame.columns:
            frame[col] = "" if dtype == "str" else (0 if dtype == "int64" else np.nan)
    frame = conform(frame)  # the dtypes of SCHEMA, as the run reads back from its file
    frame.attrs["run_record"] = record
    return frame


def execute(
    spec: RunSpec,
    cache_dir: str | Path | None = None,
    n_concurrent: int = 1,
    blas_threads: int = 1,
) -> pd.DataFrame:
    """Run one configuration and return its rows (see :data:`store.SCHEMA`).

    The rows carry the run's record in ``attrs["run_record"]`` (see :meth:`RunSpec.record`).
    """
    data = record = None
    curve = "run"
    try:
        with limit_threads(blas_threads):
            record = spec.record()
            kwargs = spec.solver.run_kwargs(spec.seed)
            probe = make_optimizer(spec.solver.solver, **kwargs)
            curve = probe.curve if isinstance(probe, BudgetedSolver) else "run"
            data = spec.problem.load(spec.seed)
            reason = _infeasible(spec, data)
            if reason is None and isinstance(probe, BudgetedSolver):
                reason = probe.skip_reason(data.model)
                reason = reason and NOT_APPLICABLE + reason
            if reason is not None:
                return _frame(
                    spec,
                    record,
                    data,
                    [],
                    "skipped",
                    reason,
                    n_concurrent,
                    blas_threads,
                    curve=curve,
                )
            ref = reference_solution(data, cache_dir, spec.reference, spec.seed)
            common = dict(alpha=data.alpha, batch_size=spec.batch_size, random_state=spec.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularCurvatureWarning)
                # CG caps and divergence are recorded as step and run statuses
                warnings.simplefilter("ignore", ConvergenceWarning)
                # warm-up: one untimed step, discarded
                minimize(
                    data.model,
                    data.X_train,
                    data.y_train,
                    make_optimizer(spec.solver.solver, **kwargs),
                    max_iter=1,
                    tol=0.0,
                    **common,
                )
                optimizer = make_optimizer(spec.solver.solver, **kwargs)
                evaluation = Objective(data.model, data.X_train, data.y_train, data.alpha)
                batch = spec.batch_size or evaluation.n_samples
                unit = evaluation
                if batch < evaluation.n_samples:
                    unit = evaluation.batch(np.arange(batch))
                grad_time = _gradient_time(unit, data.model.init_params(spec.seed))
                recorder = _Recorder(spec, data, ref, evaluation)
                result = minimize(
                    data.model,
                    data.X_train,
                    data.y_train,
                    optimizer,
                    max_iter=spec.updates(data.X_train.shape[0]),
                    tol=spec.tol,
                    time_limit=spec.time_limit,
                    callback=recorder,
                    record_every=spec.record_interval(data.X_train.shape[0]),
                    **common,
                )
            status, message = result.status, result.message
            if status == "stopped" and recorder.reached_target:
                status = "target"
                message = f"Suboptimality <= {spec.target_suboptimality:g}."
            return _frame(
                spec,
                record,
                data,
                result.history.to_dict("records"),
                status,
                message,
                n_concurrent,
                blas_threads,
                grad_time,
                curve,
            )
    except Exception as exc:  # recorded with its traceback, so the grid goes on
        message = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        record = record or spec.record()
        return _frame(
            spec,
            record,
            data,
            [],
            "error",
            f"{message}\n{tb}",
            n_concurrent,
            blas_threads,
            curve=curve,
        )
