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
any run and labels it "best known".
"""

from __future__ import annotations

import io
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import SingularCurvatureWarning
from ..optim import NaturalGradient, minimize
from .problems import ProblemData
from .store import atomic_write

__all__ = ["REFERENCE_TOL", "CacheWarning", "Reference", "reference_solution"]

REFERENCE_TOL = 1e-12
DENSE_NEWTON_MAX_PARAMS = 3000


@dataclass(frozen=True)
class Reference:
    """kind : "exact" (Newton optimum) or "none" (non-convex: best known is used later);
    loss : F*; theta : w*; grad_norm : ‖∇L(w*)‖_∞ actually reached."""

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


def _load(path: Path, n_params: int) -> Reference | None:
    """The cached reference at ``path``; None if there is none or it is damaged (warned)."""
    try:
        with np.load(path) as f:
            ref = Reference("exact", float(f["loss"]), f["theta"], float(f["grad_norm"]))
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


def reference_solution(data: ProblemData, cache_dir: str | Path | None = None) -> Reference:
    """The reference optimum of a convex problem (cached), or kind="none" otherwise."""
    if not data.problem.convex:
        return Reference("none", np.nan, None, np.nan)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{data.content_hash()}.npz"
        cached = _load(path, data.model.n_params)
        if cached is not None:
            return cached
    key = data.content_hash()
    if key not in _SOLVED:  # once per process, also without a cache folder
        _SOLVED[key] = _newton(data)
    ref = _SOLVED[key]
    if path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, loss=ref.loss, theta=ref.theta, grad_norm=ref.grad_norm)
        atomic_write(path, buffer.getvalue())
    return ref
