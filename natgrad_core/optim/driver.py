"""``minimize``: run an optimizer on a model and data, return a :class:`Result`.

The loop, in call order (each step says what it sets):

1. ``setup``      validate inputs, build the :class:`Objective`, θ₀ (``model.init_params``
                  unless given); limit the BLAS/OpenMP pools to ``blas_threads`` until
                  the run ends and read the threads in force; the optimizer state;
                  record iteration 0.
2. ``batch``      the full data, or the next mini-batch of a seeded per-epoch permutation.
3. ``step``       ``optimizer.step`` on the batch — the only code inside the clock, plus
                  the seconds it charges for reusing the driver's evaluation (below).
4. ``evaluate``   when a row is due (every ``record_every`` iterations, at the end, and
                  whenever a free full-data gradient at θ ends the run): full-data loss
                  and gradient at the new θ, *outside* the clock and not counted as
                  oracle calls; the history row; the user's ``callback``.
5. ``check``      diverged (non-finite θ or loss, or loss > ``divergence_factor`` ·
                  (|L₀| + 1)), converged (‖∇L‖_∞ ≤ ``tol``), time_limit, max_iter.
6. ``finalize``   the :class:`Result`; a diverged run also issues a
                  :class:`~natgrad_core.DivergenceWarning`.

A :class:`~natgrad_core.optim.base.BudgetedSolver` (a library's ``fit``, e.g.
scikit-learn's) replaces steps 2–4 by one fit from θ₀ per budget of a geometric grid,
each timed alone and evaluated outside the clock; its rows have no oracle counts (NaN).

Reuse, with an honest clock
---------------------------
The history's evaluation and the optimizer's own share the :class:`Objective`'s memo of
the last evaluation (:meth:`Objective.evaluation_at`), so no loss and gradient is computed
twice at one θ:

* the optimizer evaluated at the new θ itself (L-BFGS-B, whose accepted point is the last
  one its line search evaluated; a line search's forward pass at the accepted point): the
  history row reuses it, free (only the missing backward pass is computed);
* the driver evaluated first and the next step asks for the same θ (every step of the
  step-wise optimizers starts with ∇L(θ)): the optimizer gets the memo, the call is counted
  as an oracle call as before, and the seconds the driver spent computing it are charged
  to the optimizer's clock (:meth:`Objective.take_charged_seconds`).

``Result.time`` and the history's ``time`` are therefore what the optimizer alone would
have spent, and the oracle counts and trajectory are those of the optimizer alone; only
the user's wall time drops (by about half for methods whose step costs one gradient).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._threads import check_threads, limit_threads, threads_in_force
from .._typing import Array, Seed
from .._validation import (
    DivergenceWarning,
    check_finite_array,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from ..models.mlp import MLP
from ..models.objective import Objective
from .base import (
    BudgetedSolver,
    Optimizer,
    StepInfo,
    batch_refusal,
    budget_grid,
    is_optimizer,
)

__all__ = ["STATUSES", "Result", "minimize"]

STATUSES = ("converged", "max_iter", "diverged", "time_limit", "stopped", "stalled")


@dataclass
class Result:
    """What a run produced (scipy's ``OptimizeResult``, plus history and oracle counts).

    theta : final parameters, shape (n_params,)
    status : one of "converged", "max_iter", "diverged", "time_limit", "stopped" (the
             callback asked to stop), "stalled" (the solver ended on its own before ``tol``:
             L-BFGS-B when no line-search progress is possible in float64, a
             :class:`BudgetedSolver` whose fit stopped on its own criterion)
    message : a sentence saying why the run ended
    n_iter : optimizer steps taken
    loss, grad_norm : full-data L(θ) and ‖∇L(θ)‖_∞ at ``theta``
    time : seconds spent inside optimizer steps, plus the measured seconds of driver
           evaluations a step reused (module doc, "Reuse, with an honest clock")
    counts : final oracle counts (see :class:`~natgrad_core.models.OracleCounts`)
    history : one row per recorded iteration (0 = start; every ``record_every``-th and the
              last): iteration, time, loss, grad_norm,
              step_size, damping, status, the oracle counts so far, and callback columns;
              a DataFrame built from the recorded rows when first read (building it costs
              about as much as a whole small fit, so a caller who never reads it never pays)
    blas_threads : the largest thread count of any BLAS or OpenMP pool, read inside the
                   run (after ``minimize``'s ``blas_threads`` limit took effect)
    """

    theta: Array
    status: str
    message: str
    n_iter: int
    loss: float
    grad_norm: float
    time: float
    counts: dict
    _history: list[dict] | pd.DataFrame = field(repr=False, compare=False)
    blas_threads: int

    @property
    def history(self) -> pd.DataFrame:
        if not isinstance(self._history, pd.DataFrame):
            self._history = pd.DataFrame(self._history)
        return self._history

    @property
    def success(self) -> bool:
        return self.status == "converged"


class _Clock:
    """Accumulates wall time only between ``start`` and ``stop``."""

    def __init__(self):
        self.total = 0.0
        self._t0 = None

    def start(self):
        self._t0 = time.perf_counter()

    def stop(self, charged: float = 0.0):
        """Stop, adding ``charged`` seconds of work done outside the clock but used inside."""
        self.total += time.perf_counter() - self._t0 + charged
        self._t0 = None


class _Run:
    """Holds the loop's bookkeeping so the two loops (stepwise, scipy) share it."""

    def __init__(
        self, objective, max_iter, tol, time_limit, callback, divergence_factor, record_every
    ):
        self.objective = objective
        self.max_iter, self.tol, self.time_limit = max_iter, tol, time_limit
        self.record_every = record_every
        self.callback = callback
        self.divergence_factor = divergence_factor
        self.clock = _Clock()
        self.rows: list[dict] = []
        self.status = None
        self.message = ""
        self.loss0 = None
        self.counted = True  # False: the solver's oracle calls are not observable

    def counts(self) -> dict:
        counts = self.objective.counts.as_dict()
        return counts if self.counted else dict.fromkeys(counts, np.nan)

    def stop_clock(self):
        self.clock.stop(self.objective.take_charged_seconds())

    def after_step(self, theta, iteration, info: StepInfo) -> bool:
        """Record the row of ``iteration`` if it is due (module doc, step 4); True when
        the run ends."""
        due = (
            iteration % self.record_every == 0
            or iteration >= self.max_iter
            or (self.time_limit is not None and self.clock.total >= self.time_limit)
            or not np.isfinite(theta).all()
        )
        if not due:
            free = self.objective.evaluation_at(theta)
            due = free is not None and self._verdict(
                theta, iteration, free.loss, _max_abs(free.grad)
            )
        return bool(due) and self.record(theta, iteration, info)

    def record(self, theta, iteration, info: StepInfo | None):
        free = self.objective.evaluation_at(theta)  # read, not copied: no call needed
        if free is not None:
            loss, grad = free.loss, free.grad
        else:
            with np.errstate(all="ignore"):
                loss, grad = self.objective.loss_and_grad(theta, count=False)
        grad_norm = _max_abs(grad)
        row = {
            "iteration": iteration,
            "time": self.clock.total,
            "loss": loss,
            "grad_norm": grad_norm,
            "step_size": np.nan if info is None else info.step_size,
            "damping": np.nan if info is None else info.damping,
            "status": "start" if info is None else info.status,
            **self.counts(),
        }
        if info is not None and info.extra:
            row.update({k: v for k, v in info.extra.items() if np.isscalar(v)})
        if self.loss0 is None:
            self.loss0 = loss
        if self.callback is not None:
            try:
                extra = self.callback(theta, row)
            except StopIteration:
                self.rows.append(row)
                return self._end("stopped", "The callback asked to stop.")
            if extra:
                row.update(extra)
        self.rows.append(row)
        verdict = self._verdict(theta, iteration, loss, grad_norm)
        return verdict is not None and self._end(*verdict)

    def _end(self, status, message):
        self.status, self.message = status, message
        return True

    def _verdict(self, theta, iteration, loss, grad_norm) -> tuple[str, str] | None:
        """(status, message) if the run ends at this evaluation, else None."""
        if not (np.isfinite(loss) and np.isfinite(theta).all()):
            return "diverged", f"Non-finite loss or parameters at iteration {iteration}."
        if loss > self.divergence_factor * (abs(self.loss0) + 1.0):
            return (
                "diverged",
                f"Loss {loss:.6g} exceeded {self.divergence_factor:g}·(|L0| + 1) "
                f"(L0 = {self.loss0:.6g}) at iteration {iteration}.",
            )
        if grad_norm <= self.tol:
            return "converged", f"Gradient max-norm {grad_norm:.3g} <= tol {self.tol:g}."
        if self.time_limit is not None and self.clock.total >= self.time_limit:
            return "time_limit", f"Time limit {self.time_limit:g} s reached."
        if iteration >= self.max_iter:
            return "max_iter", f"Reached max_iter = {self.max_iter}."
        return None


def _max_abs(grad) -> float:
    """‖grad‖_∞, or inf when it is not finite (a NaN entry makes the max NaN)."""
    norm = float(np.abs(grad).max())
    return norm if np.isfinite(norm) else np.inf


def _batches(n_samples, batch_size, rng):
    """Seeded per-epoch permutations cut into batches; the last batch of an epoch may be
    smaller (every sample is visited once per epoch, as scikit-learn's gen_batches)."""
    while True:
        perm = rng.permutation(n_samples)
        for start in range(0, n_samples, batch_size):
            yield perm[start : start + batch_size]


def minimize(
    model: MLP,
    X,
    y,
    optimizer: Optimizer | BudgetedSolver,
    *,
    alpha: float = 0.0,
    theta0=None,
    max_iter: int = 100,
    tol: float = 1e-6,
    batch_size: int | None = None,
    random_state: Seed = None,
    time_limit: float | None = None,
    callback=None,
    divergence_factor: float = 1e6,
    blas_threads: int | None = None,
    record_every: int = 1,
) -> Result:
    """Minimize ``mean nll + alpha ‖W‖² / (2 N)`` of ``model`` on ``(X, y)``.

    Parameters
    ----------
    model : MLP or LogisticModel
    X : array of shape (n_samples, n_features);  y : array of shape (n_samples,) or
        (n_samples, n_targets)
    optimizer : NaturalGradient, GradientDescent, Momentum, Adam or LBFGS
    alpha : float, default 0 — L2 strength (``1 / C`` of scikit-learn's LogisticRegression).
    theta0 : array of shape (n_params,), optional — start (default ``model.init_params``).
    max_iter : int — optimizer steps (L-BFGS: iterations).
    tol : float — stop when the full-data gradient's max-norm ‖∇L‖_∞ ≤ tol.
    batch_size : int, optional — mini-batch size (default: full batch).
    random_state : seed for θ₀ and for the mini-batch order. Monte-Carlo Fisher labels are
        seeded by the optimizer's own ``random_state`` (``NaturalGradient(random_state=…)``).
    time_limit : float, optional — seconds of optimizer time before stopping.
    callback : callable(theta, row) -> dict or None, optional
        Called after every recorded iteration with the parameters and the history row; a
        returned dict adds columns to that row; raising ``StopIteration`` ends the run
        ("stopped").
    divergence_factor : float — loss blow-up threshold (see module doc).
    blas_threads : int, optional — limit every BLAS and OpenMP thread pool to this many
        threads for the duration of the run (None: leave them as they are). One thread is
        usually fastest for these problem sizes on a busy machine; ``Result.blas_threads``
        records what was in force.
    record_every : int, default 1
        Record the full-data history row (and call ``callback``) every this many
        iterations, and always at iteration 0 and at the last one. Between records the
        run is stopped by a non-finite θ, ``time_limit`` and ``max_iter``, and by the
        convergence and divergence tests only when a full-data loss and gradient at θ is
        free, i.e. the optimizer's last evaluation was there (L-BFGS: every iteration).
        A step-wise optimizer evaluates ∇L at the start of its next step, so its
        convergence is noticed at the next record, up to ``record_every - 1`` iterations
        late. The oracle counts and times of the rows do not depend on ``record_every``.
    """
    budgeted = isinstance(optimizer, BudgetedSolver)
    if not is_optimizer(optimizer):
        raise TypeError(
            "optimizer must be a natgrad Optimizer (methods init and step) or a "
            f"BudgetedSolver (method solve), got {type(optimizer).__name__}."
        )
    objective = Objective(model, X, y, alpha)
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_nonnegative(tol, "tol")
    divergence_factor = check_positive(divergence_factor, "divergence_factor")
    if time_limit is not None:
        time_limit = check_positive(time_limit, "time_limit")
    blas_threads = check_threads(blas_threads)
    record_every = check_positive_int(record_every, "record_every")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size > objective.n_samples:
            raise ValueError(
                f"batch_size must be <= n_samples = {objective.n_samples}, got {batch_size}."
            )
        refusal = batch_refusal(optimizer)
        if refusal is not None:
            name = getattr(optimizer, "name", "") or type(optimizer).__name__
            raise ValueError(f"{name} {refusal}; got batch_size={batch_size}.")
    # drawn from only by a random initialization and the mini-batch order (seeding from
    # the OS costs about as much as a small fit's step)
    needs_rng = batch_size is not None or (theta0 is None and model.random_init)
    rng = np.random.default_rng(random_state) if needs_rng else None
    if theta0 is None:
        theta = model.init_params(rng)
    else:
        theta = check_finite_array(theta0, "theta0", ndim=1).astype(model.dtype, copy=True)
        model.unpack(theta)

    run = _Run(objective, max_iter, tol, time_limit, callback, divergence_factor, record_every)
    with limit_threads(blas_threads):
        threads = threads_in_force()
        run.counted = not budgeted
        if not run.record(theta, 0, None):
            if budgeted:
                theta = _run_budgets(run, optimizer, objective, theta)
            elif hasattr(optimizer, "run"):
                theta = _run_scipy(run, optimizer, objective, theta)
            else:
                theta = _run_steps(run, optimizer, objective, theta, batch_size, rng)
    if run.status == "diverged":
        warnings.warn(f"The run diverged: {run.message}", DivergenceWarning, stacklevel=2)
    last = run.rows[-1]
    return Result(
        theta=theta,
        status=run.status,
        message=run.message,
        n_iter=int(last["iteration"]),
        loss=float(last["loss"]),
        grad_norm=float(last["grad_norm"]),
        time=run.clock.total,
        counts=run.counts(),
        _history=run.rows,
        blas_threads=threads,
    )


def _run_steps(run, optimizer, objective, theta, batch_size, rng):
    batches = None if batch_size is None else _batches(objective.n_samples, batch_size, rng)
    state = optimizer.init(objective, theta)
    for iteration in range(1, run.max_iter + 1):
        batch = objective if batches is None else objective.batch(next(batches))
        run.clock.start()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            theta, state, info = optimizer.step(batch, theta, state)
        run.stop_clock()
        if run.after_step(theta, iteration, info):
            break
    return theta


def _run_scipy(run, optimizer, objective, theta):
    iteration = 0
    best = {"theta": theta}

    info = StepInfo(np.nan, np.nan, 0.0, "ok", {})

    def on_iteration(th):
        nonlocal iteration
        run.stop_clock()
        iteration += 1
        best["theta"] = np.array(th, copy=True)
        if run.after_step(best["theta"], iteration, info):
            raise StopIteration
        run.clock.start()

    run.clock.start()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        res = optimizer.run(objective, theta, run.max_iter, run.tol, on_iteration)
    if run.status is None:
        # scipy ended on its own (e.g. no further progress possible in the line search)
        run.stop_clock()
        if run.rows[-1]["iteration"] != iteration and run.record(best["theta"], iteration, info):
            return best["theta"]
        run._end("stalled", f"L-BFGS-B stopped before tol: {res.message}")
    return best["theta"]


def _run_budgets(run, solver, objective, theta0):
    """One fit from θ₀ per budget of :func:`budget_grid` (see :class:`BudgetedSolver`).

    A row's ``iteration`` is the iterations its fit ran and its ``time`` the seconds of
    that fit alone; ``time_limit`` bounds the seconds of all fits together. The curve
    ends early when a fit stops on its own before its budget ("stalled", unless the
    gradient test already says "converged"): a larger budget would repeat it.
    """
    spent = 0.0
    for budget in budget_grid(run.max_iter, solver.budget_growth):
        run.clock.total = 0.0
        run.clock.start()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            theta, n_iter, message = solver.solve(objective, theta0.copy(), budget)
        run.clock.stop()
        spent += run.clock.total
        theta = np.asarray(theta, dtype=objective.model.dtype)
        info = StepInfo(np.nan, np.nan, np.nan, "ok", {"budget": budget})
        if run.record(theta, int(n_iter), info):
            break
        if n_iter < budget:
            run._end(
                "stalled",
                f"{solver.name or type(solver).__name__} stopped on its own after {n_iter} "
                f"of {budget} iterations: {message}",
            )
            break
        if run.time_limit is not None and spent >= run.time_limit:
            run._end("time_limit", f"Time limit {run.time_limit:g} s reached by all fits.")
            break
    return theta
