"""True reference optima for convex problems, cached by content hash.

For logistic regression (convex), w* and F* = L(w*) come from exact Newton — natural
gradient with the exact Fisher, which *is* the Hessian for the canonical link — with an
Armijo line search, run to ‖∇L‖_∞ ≤ 1e-12. The result is cached under
``<cache_dir>/<sha256 of data + model + L2>.npz`` so that every later run reuses it. The
cache is written atomically with a temporary file unique to its writer
(:func:`store.atomic_write`), so concurrent processes never collide; an entry that cannot
be read or does not fit the problem (a truncated or foreign file, a wrong shape, a
non-finite loss) is recomputed and replaced, with a :class:`CacheWarning` naming it. For
non-convex problems there is no computable optimum: the report uses the best loss seen in
any run and labels it "best known" — unless the grid names a :class:`ReferenceSpec`: then
each non-convex problem and run seed gets a *long reference run* (``kind="long run"``), a
strong solver given a much larger budget than the runs being compared, started from the
runs' own initialization (the run seed's ``init_params``) on the same training split, and
cached like the convex optima (the cache key adds the specification and the seed). Its
loss is the lowest full-data training loss it recorded. A non-convex problem has no
computable optimum, so this is still a "best known" value, but one that does not depend on
which runs happen to be in a table (the report still takes the lower of it and the best
run, and says which; see ``report.metrics.add_best_known``).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._validation import SingularCurvatureWarning
from ..optim import NaturalGradient, make_optimizer, minimize
from ..optim.base import batch_refusal
from ..optim.registry import resolved_params
from .problems import ProblemData
from .store import atomic_write

__all__ = [
    "REFERENCE_TOL",
    "CacheWarning",
    "Reference",
    "ReferenceSpec",
    "reference_solution",
]

REFERENCE_TOL = 1e-12
DENSE_NEWTON_MAX_PARAMS = 3000


LONG_RUN_RECORDS = 50
"""Full-data evaluations of a long reference run (its lowest loss is the reference)."""


@dataclass(frozen=True)
class ReferenceSpec:
    """The long reference run of non-convex problems: solver (a name of
    :func:`~natgrad_core.optim.make_optimizer`) with ``params`` overriding its
    recommended configuration, ``max_iter`` steps, mini-batches of ``batch_size``
    (None: full batch)."""

    solver: str
    params: tuple = ()
    max_iter: int = 1000
    batch_size: int | None = None

    def __post_init__(self):
        if isinstance(self.params, dict):
            object.__setattr__(self, "params", tuple(sorted(self.params.items())))
        for name, value in (("max_iter", self.max_iter), ("batch_size", self.batch_size)):
            if value is None and name == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"reference run: {name} must be an integer >= 1, got {value!r}.")
        try:
            optimizer = make_optimizer(self.solver, **dict(self.params))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"reference run: {exc}") from None
        refusal = batch_refusal(optimizer) if self.batch_size is not None else None
        if refusal is not None:
            raise ValueError(
                f"reference run: solver {self.solver!r} {refusal}, got "
                f"batch_size = {self.batch_size}."
            )

    def to_dict(self) -> dict:
        """Every resolved hyperparameter (the cache key and the run key hash this)."""
        return {
            "solver": self.solver,
            "params": resolved_params(self.solver, **dict(self.params)),
            "max_iter": self.max_iter,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class Reference:
    """kind : "exact" (Newton optimum), "long run" (non-convex: the lowest loss of a long
    reference run, see :class:`ReferenceSpec`) or "none" (non-convex: best known is used
    later); loss : F*; theta : w* (the long run's last iterate); grad_norm : ‖∇L‖_∞ there."""

    kind: str
    loss: float
    theta: np.ndarray | None
    grad_norm: float


def _newton(data: ProblemData) -> Reference:
    # the multinomial Fisher is singular along "add c to every class intercept"; the gradient
    # is orthogonal to that direction, so a tiny damping leaves the Newton step unchanged
    # (globalized by Armijo until 1e-8; then pure unit Newton steps, because near 1e-12 loss
    # differences are below float64 resolution and a line search cannot accept any step)
    theta = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularCurvatureWarning)
        for step, tol in (("armijo", 1e-8), ("fixed", REFERENCE_TOL)):
            if data.model.n_params <= DENSE_NEWTON_MAX_PARAMS:
                opt = NaturalGradient("exact", damping=1e-12, step=step, dense_method="parameter")
            else:
                # Newton with the system solved by CG to 1e-12: still exact Newton, without
                # a P x P matrix (the 10-class, 1000-feature problems have P = 10010)
                opt = NaturalGradient(
                    "cg",
                    damping=1e-12,
                    step=step,
                    cg_rtol=1e-12,
                    cg_maxiter=10 * data.model.n_params,
                )
            res = minimize(
                data.model,
                data.X_train,
                data.y_train,
                opt,
                alpha=data.alpha,
                theta0=theta,
                max_iter=100,
                tol=tol,
                random_state=0,
            )
            theta = res.theta
    return Reference("exact", res.loss, res.theta, res.grad_norm)


class CacheWarning(UserWarning):
    """A reference-cache entry could not be used and is recomputed."""


_SOLVED: dict[str, Reference] = {}


def _long_run(data: ProblemData, spec: ReferenceSpec, seed: int) -> Reference:
    """The long reference run from the initialization of run seed ``seed`` (minimize with
    ``random_state=seed`` draws the runs' θ₀ and batch order the same way)."""
    every = max(1, spec.max_iter // LONG_RUN_RECORDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularCurvatureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = minimize(
            data.model,
            data.X_train,
            data.y_train,
            make_optimizer(spec.solver, **dict(spec.params)),
            alpha=data.alpha,
            max_iter=spec.max_iter,
            tol=0.0,
            batch_size=spec.batch_size,
            random_state=seed,
            record_every=every,
        )
    losses = res.history["loss"].to_numpy(dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        raise ValueError(
            f"the reference run ({spec.solver}, {spec.max_iter} steps) recorded no finite "
            f"loss ({res.status}: {res.message})"
        )
    return Reference("long run", float(finite.min()), res.theta, res.grad_norm)


def _cache_key(data: ProblemData, spec: ReferenceSpec | None, seed: int) -> str:
    if spec is None:
        return data.content_hash()
    blob = json.dumps(
        {"data": data.content_hash(), "reference": spec.to_dict(), "seed": int(seed)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _load(path: Path, n_params: int, kind: str = "exact") -> Reference | None:
    """The cached reference at ``path``; None if there is none or it is damaged (warned)."""
    try:
        with np.load(path) as f:
            ref = Reference(kind, float(f["loss"]), f["theta"], float(f["grad_norm"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if ref.theta.shape == (n_params,) and np.isfinite(ref.theta).all():
            if np.isfinite(ref.loss) and np.isfinite(ref.grad_norm):
                return ref
        reason = f"theta of shape {ref.theta.shape} (expected ({n_params},)) or non-finite values"
    warnings.warn(
        f"damaged reference cache {path} ({reason}); recomputing it", CacheWarning, stacklevel=3
    )
    return None


def reference_solution(
    data: ProblemData,
    cache_dir: str | Path | None = None,
    spec: ReferenceSpec | None = None,
    seed: int = 0,
) -> Reference:
    """The reference of a problem, cached: the exact optimum of a convex problem; for a
    non-convex one the long reference run ``spec`` from run seed ``seed``'s
    initialization, or kind="none" (best known, later) without a ``spec``."""
    if not data.problem.convex and spec is None:
        return Reference("none", np.nan, None, np.nan)
    if data.problem.convex:
        spec = None
    kind = "exact" if spec is None else "long run"
    key = _cache_key(data, spec, seed)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{key}.npz"
        cached = _load(path, data.model.n_params, kind)
        if cached is not None:
            return cached
    if key not in _SOLVED:  # once per process, also without a cache folder
        _SOLVED[key] = _newton(data) if spec is None else _long_run(data, spec, seed)
    ref = _SOLVED[key]
    if path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, loss=ref.loss, theta=ref.theta, grad_norm=ref.grad_norm)
        atomic_write(path, buffer.getvalue())
    return ref
