"""Kronecker-factored approximate curvature (K-FAC) and its eigenbasis correction (EKFAC).

For layer l with inputs ā (bias folded in as a constant 1) and back-propagated output
factors g, the Fisher block E[(ā ⊗ g)(ā ⊗ g)ᵀ] is approximated by

    A_l ⊗ G_l,      A_l = (1/N) Σₙ āₙ āₙᵀ,      G_l = (1/N) Σₙ Σₘ gₘₙ gₘₙᵀ

(Martens & Grosse 2015, eq. (1) and §3), each factor a single syrk. The curvature is
block-diagonal over layers. It equals the exact block when N = 1, when all inputs are
identical, and for deep linear networks with a Gaussian head (gₙ does not depend on n).

The L2 term is absorbed into the Tikhonov damping, as in Martens & Grosse §6: the operator
is ``blockdiag(A_l ⊗ G_l) + l2 · I`` (biases included) and ``solve(v, λ)`` uses
``γ = l2 + λ``. Damping modes (what ``solve`` inverts, per layer):

* ``"exact"``      (A ⊗ G + γI)⁻¹ via eigendecompositions A = Q_A diag(a) Q_Aᵀ,
                   G = Q_G diag(g) Q_Gᵀ:  (Q_A ⊗ Q_G) diag(1 / (a ⊗ g + γ)) (Q_A ⊗ Q_G)ᵀ.
* ``"tikhonov"``   factored Tikhonov with π (Martens & Grosse §6.3):
                   ((A + π√γ I) ⊗ (G + √γ/π I))⁻¹,  π = √((tr A / dim A) / (tr G / dim G)).
* ``"per_factor"`` the same with π = 1: ((A + √γ I) ⊗ (G + √γ I))⁻¹.

EKFAC (George et al. 2018) keeps K-FAC's eigenbasis but replaces the eigenvalue products
a ⊗ g by the exact second moments of the gradients in that basis:
``s = (1/N) Σₙ Σₘ (Q_Aᵀ āₙ)² ⊗ (Q_Gᵀ gₘₙ)²``, the best diagonal in the Kronecker eigenbasis.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import numpy as np
from scipy.linalg import block_diag

from .._typing import Array, Seed
from .._validation import check_choice, warn_singular
from ._linalg import SymmetricSolver, add_flops, eigh_counted, syrk_t
from .base import CurvatureOperator, layer_statistics, parse_fisher_type

__all__ = [
    "EKFAC",
    "KFAC",
    "KFACDamping",
    "KFACFactors",
    "factors_from_statistics",
    "kfac_factors",
]


class KFACDamping(str, Enum):
    EXACT = "exact"
    TIKHONOV = "tikhonov"
    PER_FACTOR = "per_factor"


class KFACFactors(NamedTuple):
    """Per-layer Kronecker factors: ``A[l]`` (rows_l, rows_l), ``G[l]`` (fan_out_l, fan_out_l)."""

    A: list
    G: list


def factors_from_statistics(inputs, grads, counts=None) -> KFACFactors:
    """K-FAC factors from :func:`~natgrad_core.curvature.base.layer_statistics` output
    (one syrk per factor, its flops added to ``counts``)."""
    n = inputs[0].shape[0]
    A = [syrk_t(a, alpha=1.0 / n, counts=counts) for a in inputs]
    G = [syrk_t(g.reshape(-1, g.shape[-1]), alpha=1.0 / n, counts=counts) for g in grads]
    return KFACFactors(A, G)


def kfac_factors(
    objective,
    theta: Array,
    fisher_type="exact",
    mc_samples: int = 1,
    random_state: Seed = None,
    n_statistics: int | None = None,
) -> KFACFactors:
    """The K-FAC factors of the mean Fisher at ``theta`` (from ``n_statistics`` rows drawn
    from the batch when given: see :func:`~natgrad_core.curvature.base.layer_statistics`)."""
    return factors_from_statistics(
        *layer_statistics(
            objective, theta, parse_fisher_type(fisher_type), mc_samples, random_state, n_statistics
        ),
        objective.counts,
    )


class KFAC(CurvatureOperator):
    """Block-diagonal Kronecker-factored Fisher (see module doc).

    Parameters
    ----------
    objective : Objective
    theta : array of shape (n_params,), optional if ``factors`` is given
    fisher_type, mc_samples, random_state, reduction
        As for :class:`~natgrad_core.curvature.dense.DenseFisher`.
    damping_mode : {"exact", "tikhonov", "per_factor"}, default "exact"
    factors : KFACFactors, optional
        Precomputed (e.g. moving-average) factors of the *mean* Fisher.
    n_statistics : int, optional
        Build the factors from this many rows drawn from the batch (sub-sampled curvature).
    """

    def __init__(
        self,
        objective,
        theta: Array | None = None,
        fisher_type="exact",
        mc_samples: int = 1,
        random_state: Seed = None,
        damping_mode: str = "exact",
        reduction: str = "mean",
        factors: KFACFactors | None = None,
        n_statistics: int | None = None,
    ):
        super().__init__(objective, reduction)
        self.damping_mode = check_choice(damping_mode, "K-FAC damping mode", KFACDamping)
        if factors is None:
            if theta is None:
                raise ValueError("KFAC needs either theta or precomputed factors, got neither.")
            factors = kfac_factors(
                objective, theta, fisher_type, mc_samples, random_state, n_statistics
            )
        model = objective.model
        expected = [((lay.rows, lay.rows), (lay.fan_out, lay.fan_out)) for lay in model.layers]
        got = [np.shape(A) for A in factors.A], [np.shape(G) for G in factors.G]
        got = list(zip(*got)) if len(got[0]) == len(got[1]) else got
        if got != expected:
            raise ValueError(f"Shape mismatch: expected K-FAC factor shapes {expected}, got {got}.")
        # √N on each factor keeps every damping mode's matrix equal to N × the mean one
        root = np.sqrt(self.scale)
        self.factors = KFACFactors([root * A for A in factors.A], [root * G for G in factors.G])
        self._eig = None
        self._factor_solvers: dict = {}

    # ------------------------------------------------------------------ products
    def _blocks(self, v):
        return self.objective.model.unpack(v)

    def _count_kronecker_products(self, n_products: int = 1) -> None:
        """Add the flops of ``n_products`` products ``L V R`` per layer, with L of shape
        (rows, rows), V (rows, fan_out), R (fan_out, fan_out): 2·rows·fan_out·(rows + fan_out)
        each."""
        add_flops(
            self.objective.counts,
            n_products
            * sum(2 * len(A) * len(G) * (len(A) + len(G)) for A, G in zip(*self.factors)),
        )

    def _matvec(self, v):
        self._count_kronecker_products()
        out = [A @ V @ G for A, G, V in zip(*self.factors, self._blocks(v))]
        return self.objective.model.pack(out) + self.l2 * v

    def _to_dense(self):
        blocks = [np.kron(A, G) for A, G in zip(*self.factors)]
        return block_diag(*blocks) + self.l2 * np.eye(self.n_params, dtype=self.dtype)

    # ------------------------------------------------------------------ inverses
    def eigendecompositions(self):
        """[(a, Q_A, g, Q_G)] per layer, computed once and cached."""
        if self._eig is None:
            self._eig = []
            counts = self.objective.counts
            for A, G in zip(*self.factors):
                a, QA = eigh_counted(A, counts)
                g, QG = eigh_counted(G, counts)
                self._eig.append((np.maximum(a, 0.0), QA, np.maximum(g, 0.0), QG))
        return self._eig

    def pi(self) -> list[float]:
        """π_l = √((tr A / dim A) / (tr G / dim G)) per layer (Martens & Grosse eq. (11))."""
        out = []
        for A, G in zip(*self.factors):
            ta, tg = np.trace(A) / A.shape[0], np.trace(G) / G.shape[0]
            out.append(float(np.sqrt(ta / tg)) if ta > 0 and tg > 0 else 1.0)
        return out

    def _factored_shifts(self, gamma):
        root = np.sqrt(gamma)
        pis = (
            self.pi() if self.damping_mode is KFACDamping.TIKHONOV else [1.0] * len(self.factors.A)
        )
        return [(p * root, root / p) for p in pis]

    def damped_dense(self, damping: float = 0.0) -> Array:
        """The matrix whose inverse :meth:`solve` applies (per damping mode)."""
        gamma = self.l2 + damping
        if self.damping_mode is KFACDamping.EXACT:
            return self._to_dense() + damping * np.eye(self.n_params, dtype=self.dtype)
        blocks = [
            np.kron(A + sa * np.eye(len(A)), G + sg * np.eye(len(G)))
            for (A, G), (sa, sg) in zip(zip(*self.factors), self._factored_shifts(gamma))
        ]
        return block_diag(*blocks)

    def _eigen_scales(self):
        """Per-layer diagonal in the eigenbasis: a ⊗ g for K-FAC."""
        return [np.outer(a, g) for a, _, g, _ in self.eigendecompositions()]

    def _solve_eigen(self, v, gamma):
        """Apply ``(Q_A ⊗ Q_G) diag(1 / (s + γ)) (Q_A ⊗ Q_G)ᵀ`` per layer.

        An eigenvalue of a factor of dimension n is known to ``n · eps · max`` (the module
        doc of ``_linalg``), so a product ``a_i g_j`` is known to
        ``(dim A + dim G) · eps · max(s)``: entries of ``s + γ`` below that are zero to
        working precision and get a pseudo-inverse.
        """
        out = []
        singular = False
        eps = np.finfo(self.dtype).eps
        self._count_kronecker_products(n_products=2)  # into the eigenbasis and back
        for (_, QA, _, QG), s, V in zip(
            self.eigendecompositions(), self._eigen_scales(), self._blocks(v)
        ):
            d = s + gamma
            cutoff = max(float(s.max()), 0.0) * (len(QA) + len(QG)) * eps
            ok = d > cutoff
            singular |= not np.all(ok)
            inv = np.where(ok, 1.0 / np.where(ok, d, 1.0), 0.0)
            out.append(QA @ ((QA.T @ V @ QG) * inv) @ QG.T)
        if singular:
            warn_singular(
                f"{type(self).__name__} curvature is singular with zero damping; "
                "used a pseudo-inverse, status 'pinv'."
            )
            self.status = "pinv"
        return self.objective.model.pack(out)

    def _solve_factored(self, v, gamma):
        if gamma not in self._factor_solvers:
            solvers = []
            for (A, G), (sa, sg) in zip(zip(*self.factors), self._factored_shifts(gamma)):
                solvers.append(
                    (
                        SymmetricSolver(A + sa * np.eye(len(A)), self.objective.counts, "K-FAC A"),
                        SymmetricSolver(G + sg * np.eye(len(G)), self.objective.counts, "K-FAC G"),
                    )
                )
            self._factor_solvers[gamma] = solvers
        solvers = self._factor_solvers[gamma]
        statuses = {s.status for pair in solvers for s in pair} - {"ok"}
        if statuses:
            self.status = "pinv" if "pinv" in statuses else "jitter"
        out = [sA.solve(sG.solve(V.T).T) for (sA, sG), V in zip(solvers, self._blocks(v))]
        return self.objective.model.pack(out)

    def _solve(self, v, damping):
        if v.ndim == 2:
            return np.column_stack([self._solve(col, damping) for col in v.T])
        gamma = self.l2 + damping
        if self.damping_mode is KFACDamping.EXACT:
            return self._solve_eigen(v, gamma)
        return self._solve_factored(v, gamma)


class EKFAC(KFAC):
    """Eigenvalue-corrected K-FAC (George et al. 2018); ``solve`` is exact for its matrix
    ``blockdiag((Q_A ⊗ Q_G) diag(s) (Q_A ⊗ Q_G)ᵀ) + l2·I`` (damping mode "exact" only).

    The eigenbasis comes from ``basis`` (the ``eigendecompositions()`` of an earlier
    operator, to refresh it rarely), from ``factors`` (e.g. moving averages), or from the
    current batch; the scalings ``s`` always come from the current batch (``statistics``:
    the ``layer_statistics`` of that batch, if the caller already has them).
    """

    def __init__(
        self,
        objective,
        theta: Array,
        fisher_type="exact",
        mc_samples: int = 1,
        random_state: Seed = None,
        reduction: str = "mean",
        factors: KFACFactors | None = None,
        basis: list | None = None,
        statistics: tuple | None = None,
    ):
        if statistics is None:
            statistics = layer_statistics(
                objective, theta, parse_fisher_type(fisher_type), mc_samples, random_state
            )
        inputs, grads = statistics
        if factors is None:
            factors = factors_from_statistics(inputs, grads, objective.counts)
        super().__init__(
            objective, theta, damping_mode="exact", reduction=reduction, factors=factors
        )
        if basis is not None:
            self._eig = list(basis)
        n = inputs[0].shape[0]  # the rows the statistics came from (maybe a sub-sample)
        # per layer: rotate ā (2 n rows²) and the m columns g (2 m n fan_out²), one GEMM
        add_flops(
            objective.counts,
            sum(
                2 * n * (a.shape[1] ** 2 + g.shape[0] * g.shape[2] ** 2 + a.shape[1] * g.shape[2])
                for a, g in zip(inputs, grads)
            ),
        )
        self.scalings = [
            self.scale / n * ((a @ QA) ** 2).T @ ((g @ QG) ** 2).sum(axis=0)
            for (_, QA, _, QG), a, g in zip(self.eigendecompositions(), inputs, grads)
        ]

    def _eigen_scales(self):
        return self.scalings

    def _matvec(self, v):
        self._count_kronecker_products(n_products=2)  # into the eigenbasis and back
        out = [
            QA @ ((QA.T @ V @ QG) * s) @ QG.T
            for (_, QA, _, QG), s, V in zip(
                self.eigendecompositions(), self.scalings, self._blocks(v)
            )
        ]
        return self.objective.model.pack(out) + self.l2 * v

    def _to_dense(self):
        blocks = [
            _sandwich(np.kron(QA, QG), s.ravel())
            for (_, QA, _, QG), s in zip(self.eigendecompositions(), self.scalings)
        ]
        return block_diag(*blocks) + self.l2 * np.eye(self.n_params, dtype=self.dtype)


def _sandwich(Q: Array, d: Array) -> Array:
    """Q diag(d) Qᵀ."""
    return (Q * d) @ Q.T
