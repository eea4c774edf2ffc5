"""Matrix-free Fisher-vector products and preconditioned conjugate gradients.

    C v = (s) Σₙ Jₙᵀ Λ̃ₙ (Jₙ v) + l2 · mask ⊙ v

computed as one forward-mode pass (``jvp``), an output-space product, and one reverse
pass (``vjp``) — Pearlmutter (1994), Schraudolph (2002). No (P, P) matrix is ever formed;
the cost of one product is about two gradient evaluations.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

from .._typing import Array, Seed
from .._validation import CGMaxIterWarning, check_nonnegative, check_positive_int, warn_singular
from .base import CurvatureOperator, FisherType, output_factors, parse_fisher_type

__all__ = ["CGResult", "ImplicitFisher", "conjugate_gradient", "forcing_term"]

EW_GAMMA = 1.0
EW_ALPHA = (1.0 + np.sqrt(5.0)) / 2.0
EW_ETA_MAX = 0.5
"""Eisenstat & Walker's (1996) choice 2 constants γ = 1, α = (1 + √5)/2 (one of the two
pairs they recommend; fewer products than γ = 0.9, α = 2 on the bundled logistic fits) and
the cap η_max (0.5, the largest forcing term of Nocedal & Wright's Algorithm 7.1)."""


class CGResult(NamedTuple):
    """x : solution; n_iter : iterations run; residual : final ‖b − A x‖ / ‖b‖;
    converged : whether ``residual <= rtol``; reason : "converged", "max_iter" or
    "nonpositive_curvature" (a direction with pᵀAp ≤ 0: A is singular or indefinite);
    r : the final residual b − A x as CG's recurrence carries it (so A x = b − r without
    another product)."""

    x: Array
    n_iter: int
    residual: float
    converged: bool
    reason: str = "converged"
    r: Array | None = None


def conjugate_gradient(matvec, b: Array, x0=None, rtol=1e-10, maxiter=None, precond=None):
    """Preconditioned CG for a symmetric positive-definite system ``A x = b``.

    Nocedal & Wright (2006), Algorithm 5.3. ``precond(r)`` applies M⁻¹ ≈ A⁻¹. Stops when
    ``‖r‖ ≤ rtol · ‖b‖`` or after ``maxiter`` iterations (default ``len(b)``); a warm start
    ``x0`` (e.g. the previous natural-gradient direction) costs one extra product.
    Directions of non-positive curvature (pᵀAp ≤ 0) stop the iteration early.
    """
    b = np.asarray(b)
    maxiter = b.size if maxiter is None else maxiter
    b_norm = float(np.linalg.norm(b))
    if b_norm == 0.0:
        return CGResult(np.zeros_like(b), 0, 0.0, True, r=np.zeros_like(b))
    if x0 is None:
        x = np.zeros_like(b)
        r = b.copy()
    else:
        x = np.array(x0, dtype=b.dtype, copy=True)
        r = b - matvec(x)
    y = precond(r) if precond is not None else r
    p = y.copy()
    ry = float(r @ y)
    # ‖r‖ as np.linalg.norm computes it (√(r·r)), without its overhead; r·y is r·r unpreconditioned
    res = math.sqrt(ry if precond is None else float(r @ r)) / b_norm
    n_iter = 0
    reason = "max_iter"
    while res > rtol and n_iter < maxiter:
        Ap = matvec(p)
        pAp = float(p @ Ap)
        n_iter += 1
        if pAp <= 0.0:
            reason = "nonpositive_curvature"
            break
        step = ry / pAp
        x += step * p
        r -= step * Ap
        y = precond(r) if precond is not None else r
        ry_new = float(r @ y)
        p *= ry_new / ry
        p += y
        ry = ry_new
        res = math.sqrt(ry if precond is None else float(r @ r)) / b_norm
    converged = res <= rtol
    return CGResult(x, n_iter, res, converged, "converged" if converged else reason, r)


def forcing_term(grad_norm: float, previous: tuple[float, float] | None, floor: float) -> float:
    """The relative residual ηₖ to which an inexact Newton step solves ``C d = −∇L``.

    Eisenstat & Walker (1996), "Choosing the forcing terms in an inexact Newton method",
    SIAM J. Sci. Comput. 17(1), choice 2 with its safeguard:

        ηₖ = γ (‖∇Lₖ‖ / ‖∇Lₖ₋₁‖)^α,   ηₖ ← max(ηₖ, γ ηₖ₋₁^α) if γ ηₖ₋₁^α > 0.1,

    with γ = 1, α = (1 + √5)/2 (local convergence of q-order α when C is the Hessian),
    then clipped to [``floor``, η_max = 0.5]; η₀ = η_max. Loose solves far from the
    optimum, tight ones near it: no CG iterations spent on a Newton model that is still
    poor. Nocedal & Wright (2006), Theorem 7.2, for why ηₖ → 0 gives superlinear steps.
    ``previous`` is (‖∇Lₖ₋₁‖₂, ηₖ₋₁), None at the first step.
    """
    if previous is None:
        eta = EW_ETA_MAX
    else:
        previous_norm, previous_eta = previous
        ratio = grad_norm / previous_norm if previous_norm > 0 else 1.0
        eta = EW_GAMMA * ratio**EW_ALPHA
        safeguard = EW_GAMMA * previous_eta**EW_ALPHA
        if safeguard > 0.1:
            eta = max(eta, safeguard)
    return float(min(EW_ETA_MAX, max(eta, floor)))


class ImplicitFisher(CurvatureOperator):
    """Fisher-vector products without forming the matrix; :meth:`solve` runs CG.

    Parameters
    ----------
    objective, theta, fisher_type, mc_samples, random_state, reduction
        As for :class:`~natgrad_core.curvature.dense.DenseFisher`.
    cg_rtol : float, default 1e-10
        Relative residual at which CG stops (raised to 100·eps of the dtype if smaller).
    cg_maxiter : int, optional
        Iteration cap (default: 10 · n_params; in floating point CG often needs more than
        the n_params steps of exact arithmetic).
    preconditioner : CurvatureOperator, optional
        Its ``solve(r, damping)`` is used as M⁻¹ (e.g. DiagonalFisher or KFAC).

    After a solve, ``last_cg`` holds the :class:`CGResult`; ``status`` is "max_cg_iter"
    when CG hit its cap before reaching ``cg_rtol`` (with a :class:`CGMaxIterWarning`) and
    "cg_nonpositive_curvature" when it met a direction of zero curvature (singular Fisher
    with zero damping; a :class:`SingularCurvatureWarning`).
    """

    def __init__(
        self,
        objective,
        theta: Array,
        fisher_type="exact",
        mc_samples: int = 1,
        random_state: Seed = None,
        reduction: str = "mean",
        cg_rtol: float = 1e-10,
        cg_maxiter: int | None = None,
        preconditioner: CurvatureOperator | None = None,
    ):
        super().__init__(objective, reduction)
        self.fisher_type = parse_fisher_type(fisher_type)
        self.theta = np.asarray(theta, dtype=self.dtype)
        self.cache = objective.forward(self.theta)
        if self.fisher_type is FisherType.EXACT:
            self._lam = objective.model.head.lam_operator(self.cache.outputs)
        else:
            self._U = output_factors(
                objective, self.theta, self.fisher_type, mc_samples, random_state
            )
        # a residual below ~100 eps is out of reach in this precision (float32: ~1e-5)
        self.cg_rtol = max(check_nonnegative(cg_rtol, "cg_rtol"), 100 * np.finfo(self.dtype).eps)
        self.cg_maxiter = (
            None if cg_maxiter is None else check_positive_int(cg_maxiter, "cg_maxiter")
        )
        self.preconditioner = preconditioner
        self.last_cg: CGResult | None = None
        self._s = self.scale / objective.n_samples
        self._penalty = self._penalty_diag()

    def _output_product(self, Jv: Array) -> Array:
        if self.fisher_type is FisherType.EXACT:
            return self._lam(Jv)
        return np.einsum("mn,mni->ni", np.einsum("mni,ni->mn", self._U, Jv), self._U)

    def _matvec(self, v):
        self.objective.counts.n_fvp += 1
        model = self.objective.model
        Jv = model.jvp(self.theta, self.cache, v)
        return self._s * model.vjp(self.theta, self.cache, self._output_product(Jv)) + (
            self._penalty * v
        )

    def gram(self, V) -> Array:
        """``Vᵀ C V`` for the columns of V, shape (n_params, m) → (m, m).

        ``vᵢᵀ C vⱼ = s Σₙ (Jₙvᵢ)ᵀ Λ̃ₙ (Jₙvⱼ) + l2 vᵢᵀ(mask ⊙ vⱼ)`` needs only the
        forward-mode passes ``J vᵢ``, no reverse pass: the curvature quadratic forms of
        K-FAC's step (Martens & Grosse 2015, §7). A product costs a forward-mode and a
        reverse pass, so m forward-mode passes are counted as ``⌈m / 2⌉`` in ``n_fvp``.
        """
        V = self._check_vector(V, "V")
        V = V[:, None] if V.ndim == 1 else V
        m = V.shape[1]
        self.objective.counts.n_fvp += -(-m // 2)
        model = self.objective.model
        JV = [model.jvp(self.theta, self.cache, v) for v in V.T]
        out = (V.T * self._penalty) @ V
        for i, Jv in enumerate(JV):
            CJv = self._output_product(Jv)
            for j in range(i, m):
                out[i, j] += self._s * np.vdot(JV[j], CJv)
                out[j, i] = out[i, j]
        return out

    def _solve(self, v, damping, x0=None):
        if v.ndim == 2:
            starts = [None] * v.shape[1] if x0 is None else list(x0.T)
            return np.column_stack(
                [self._solve(col, damping, start) for col, start in zip(v.T, starts)]
            )
        pre = self.preconditioner
        result = conjugate_gradient(
            lambda w: self._matvec(w) + damping * w,
            v,
            x0=x0,
            rtol=self.cg_rtol,
            maxiter=self.cg_maxiter or 10 * self.n_params,
            precond=None if pre is None else (lambda r: pre.solve(r, damping)),
        )
        self.objective.counts.n_cg_iter += result.n_iter
        self.last_cg = result
        self.status = {
            "converged": "ok",
            "max_iter": "max_cg_iter",
            "nonpositive_curvature": "cg_nonpositive_curvature",
        }[result.reason]
        if result.reason == "max_iter":
            warnings.warn(
                f"CG stopped at its cap of {result.n_iter} iterations before reaching "
                f"rtol={self.cg_rtol:g}; used the inexact solution, status 'max_cg_iter'.",
                CGMaxIterWarning,
                stacklevel=3,
            )
        elif result.reason == "nonpositive_curvature":
            warn_singular(
                "CG met a direction of zero curvature (singular Fisher with zero damping); "
                "stopped there, status 'cg_nonpositive_curvature'."
            )
        return result.x

    def solve(self, v, damping: float = 0.0, x0=None) -> Array:
        """``(C + damping·I)⁻¹ v`` by CG, warm-started from ``x0`` if given."""
        damping = check_nonnegative(damping, "damping")
        v = self._check_vector(v)
        if x0 is not None:
            x0 = self._check_vector(x0, "x0")
            if x0.shape != v.shape:
                raise ValueError(f"Shape mismatch: x0 has shape {x0.shape}, v has {v.shape}.")
        self.status = "ok"
        return self._solve(v, damping, x0)
