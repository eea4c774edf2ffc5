"""The diagonal of the Fisher.

    diag(F)_l = (1/N) Σₙ Σₘ (ā_l,ₙ ⊙ ā_l,ₙ) ⊗ (g_l,ₘₙ ⊙ g_l,ₘₙ)
              = (1/N) (Ā_l ⊙ Ā_l)ᵀ (Σₘ G_l,ₘ ⊙ G_l,ₘ)           — one GEMM per layer

(the identity behind "BackPACK"'s DiagGGN, Dangel, Kunstner & Hennig 2020). With
``fisher_type="empirical"`` this is the mean of squared per-example gradients — the
statistic that Adam and RMSprop track with moving averages (without the square root).
Inverting a diagonal is exact; a zero entry with zero damping is singular and falls back
to a pseudo-inverse (that coordinate of the solution is 0) with status "pinv".
"""

from __future__ import annotations

import numpy as np

from .._typing import Array, Seed
from .._validation import warn_singular
from ._linalg import add_flops
from .base import CurvatureOperator, layer_statistics, parse_fisher_type

__all__ = ["DiagonalFisher"]


class DiagonalFisher(CurvatureOperator):
    """``diag(F) + l2·mask`` as a curvature operator.

    Parameters are those of :class:`~natgrad_core.curvature.dense.DenseFisher` (no
    ``method``). ``diagonal`` holds the vector of shape (n_params,).
    """

    def __init__(
        self,
        objective,
        theta: Array,
        fisher_type="exact",
        mc_samples: int = 1,
        random_state: Seed = None,
        reduction: str = "mean",
    ):
        super().__init__(objective, reduction)
        self.fisher_type = parse_fisher_type(fisher_type)
        inputs, grads = layer_statistics(
            objective, theta, self.fisher_type, mc_samples, random_state
        )
        s = self.scale / objective.n_samples
        # per layer: squares and the sum over factors (2 m n f), one GEMM (2 n rows f)
        add_flops(
            objective.counts,
            sum(
                2 * g.shape[1] * g.shape[2] * (g.shape[0] + a.shape[1])
                for a, g in zip(inputs, grads)
            ),
        )
        diag = np.concatenate(
            [((a * a).T @ (g * g).sum(axis=0)).ravel() for a, g in zip(inputs, grads)]
        )
        self.diagonal = s * diag + self._penalty_diag()

    def _matvec(self, v):
        return self.diagonal * v

    def _to_dense(self):
        return np.diag(self.diagonal)

    def _solve(self, v, damping):
        d = self.diagonal + damping
        positive = d > 0
        if not np.all(positive):
            warn_singular(
                f"diagonal Fisher has {int(np.sum(~positive))} zero entries and damping is 0; "
                "the pseudo-inverse sets those coordinates to 0, status 'pinv'."
            )
            self.status = "pinv"
        inv = np.where(positive, 1.0 / np.where(positive, d, 1.0), 0.0)
        return inv[:, None] * v if v.ndim == 2 else inv * v
