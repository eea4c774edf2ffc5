"""True reference optima for convex problems, cached by content hash.

For logistic regression (convex), w* and F* = L(w*) come from exact Newton — natural
gradient with the exact Fisher, which *is* the Hessian for the canonical link — with an
Armijo line search, run to ‖∇L‖_∞ ≤ 1e-12. The result is cached under
``<cache_dir>/<sha256 of data + model + L2>.npz`` so that every later run reuses it. For
non-convex problems there is no computable optimum: the report uses the best loss seen in
any run and labels it "best known".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import SingularCurvatureWarning
from ..optim import NaturalGradient, minimize
from .problems import ProblemData

__all__ = ["REFERENCE_TOL", "Reference", "reference_solution"]

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


_SOLVED: dict[str, Reference] = {}


def reference_solution(data: ProblemData, cache_dir: str | Path | None = None) -> Reference:
    """The reference optimum of a convex problem (cached), or kind="none" otherwise."""
    if not data.problem.convex:
        return Reference("none", np.nan, None, np.nan)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{data.content_hash()}.npz"
        if path.is_file():
            with np.load(path) as f:
                return Reference("exact", float(f["loss"]), f["theta"], float(f["grad_norm"]))
    key = data.content_hash()
    if key not in _SOLVED:  # once per process, also without a cache folder
        _SOLVED[key] = _newton(data)
    ref = _SOLVED[key]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, loss=ref.loss, theta=ref.theta, grad_norm=ref.grad_norm)
        tmp.replace(path)
    return ref
