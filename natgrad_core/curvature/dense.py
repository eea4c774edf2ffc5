"""The exact Fisher as a dense matrix (parameter space) or through its sample-space factor.

    F = (1/N) Σₙ Jₙᵀ Λ̃ₙ Jₙ = SᵀS / N,       S = rows  Jₙᵀ U[m, n]  (back-propagated factors)

Two ways to apply ``(C + λI)⁻¹`` with ``C = s·SᵀS + E₀`` (``s = scale / N``, ``E₀`` the L2 term):

* **parameter space** — build the (P, P) matrix and factor it by Cholesky: O(R·P² + P³) for
  R = n_factors · N rows of S, one syrk of S written chunk by chunk into an F-ordered
  buffer (for binary logistic regression S = √w · X̄: one pass of weights, one syrk). For
  one-layer (generalized linear) models with K > 1 outputs, the matrix is built from class
  blocks ``F[(i,c),(j,c')] = (1/N) X̄ᵀ diag(Λ̃_cc') X̄`` — a factor K less than forming S —
  for the softmax's exact Λ = diag(p) − ppᵀ by two syrks (:func:`softmax_class_block_fisher`),
  otherwise one GEMM over the K(K+1)/2 distinct pairs.
* **sample space** — Woodbury's identity (Nocedal & Wright 2006, eq. (A.28)):

      (E + s SᵀS)⁻¹ = E⁻¹ − E⁻¹Sᵀ (I/s + S E⁻¹ Sᵀ)⁻¹ S E⁻¹,    E = E₀ + λI,

  with the R×R Gram ``S E⁻¹ Sᵀ = Σ_l (Ā_l E_a⁻¹ Ā_lᵀ) ⊙ (G_l G_lᵀ)`` assembled layer by layer
  without ever forming S: O(R²·Σ widths + R³). It needs E > 0 (positive damping, or no
  intercepts and a positive L2 term).

``method="auto"`` uses sample space when R < P and E > 0, parameter space otherwise.
Either refuses with :class:`~natgrad_core._memory.MemoryLimitError` before allocating
arrays that would not fit (two P×P, three R×R, three (N, K, K) for Λ): see
:func:`~natgrad_core._memory.check_memory`.
"""

from __future__ import annotations

import numpy as np

from .._memory import check_memory
from .._typing import Array, Seed
from .._validation import check_choice, check_positive_int
from ..models.mlp import ROW_BLOCK_BYTES
from ._linalg import SymmetricSolver, add_flops, add_to_diagonal, symmetrize_upper, syrk_t
from .base import (
    CurvatureOperator,
    FisherType,
    backpropagate_factors,
    check_output_curvature_memory,
    output_factors,
    parse_fisher_type,
)

__all__ = ["DenseFisher", "class_block_fisher", "softmax_class_block_fisher"]

_CHUNK_ELEMENTS = 1 << 22  # bound temporaries at ~32 MB of float64


def class_block_fisher(Xb: Array, Lam: Array, counts=None) -> Array:
    """Σₙ (x̄ₙ x̄ₙᵀ) ⊗ Λₙ, indexed [(i, c), (j, c')] (row-major over a (rows, K) weight matrix).

    Xb : array of shape (n_samples, n_rows);  Lam : array of shape (n_samples, K, K).
    Only the K(K+1)/2 pairs c ≤ c' are computed, one GEMM per chunk of samples:
    ``2 · n_samples · n_rows² · K(K+1)/2`` flops, added to ``counts``.
    """
    n, r = Xb.shape
    k = Lam.shape[1]
    iu, ju = np.triu_indices(k)
    n_pairs = iu.size
    add_flops(counts, 2 * n * r * r * n_pairs)
    lam_pairs = Lam[:, iu, ju]
    acc = np.zeros((r, n_pairs * r), dtype=Xb.dtype)
    step = max(1, _CHUNK_ELEMENTS // (n_pairs * r))
    for start in range(0, n, step):
        xs = Xb[start : start + step]
        weighted = (lam_pairs[start : start + step, :, None] * xs[:, None, :]).reshape(len(xs), -1)
        acc += xs.T @ weighted
    blocks = acc.reshape(r, n_pairs, r).transpose(1, 0, 2)
    F4 = np.empty((r, k, r, k), dtype=Xb.dtype)
    F4[:, iu, :, ju] = blocks
    F4[:, ju, :, iu] = blocks
    return F4.reshape(r * k, r * k)


def softmax_class_block_fisher(Xb: Array, p: Array, counts=None) -> Array:
    """:func:`class_block_fisher` for the softmax's ``Λₙ = diag(pₙ) − pₙpₙᵀ``, by two syrks.

    Xb : array of shape (n_samples, n_rows);  p : array of shape (n_samples, K), the class
    probabilities. Off the diagonal, ``Λ_cc' = −p_c p_c'``, so every block is a block of
    ``−BᵀB`` with ``B = [x̄ₙ ⊗ pₙ]`` of shape (n_samples, n_rows · K) (columns ordered
    (i, c), the layout of the result): one syrk. The diagonal blocks are then replaced by
    ``X̄ᵀ diag(p_c − p_c²) X̄``, one syrk of ``√(p_c − p_c²) · x̄`` per class, with the head's
    own entries of Λ, so no block is a difference of two sums (which would cancel where
    p_c → 1). Flops ``n·rK·(rK + 1) + K·n·r·(r + 1)``, equal to the K(K+1)/2 pair GEMMs of
    :func:`class_block_fisher`, but in two syrk kernels and with temporaries of n·r·K
    entries instead of n·r·K(K+1)/2 — the memory traffic that dominated the pair GEMMs.
    """
    n, r = Xb.shape
    k = p.shape[1]
    lam_diag = p - p * p  # Λ_cc exactly as the softmax head computes it
    F = np.zeros((r * k, r * k), dtype=Xb.dtype, order="F")
    D = np.zeros((k, r, r), dtype=Xb.dtype)  # C-ordered: each D[c] is F-ordered transposed
    step = min(n, max(1, _CHUNK_ELEMENTS // (r * k)))
    buffer = np.empty(step * r * k, dtype=Xb.dtype)
    for start in range(0, n, step):
        xs, ps = Xb[start : start + step], p[start : start + step]
        m = len(xs)
        B = buffer[: m * r * k].reshape(m, r, k)
        np.multiply(xs[:, :, None], ps[:, None, :], out=B)
        syrk_t(B.reshape(m, r * k), out=F, alpha=-1.0, counts=counts, symmetrize=False)
        W = buffer[: m * r].reshape(m, r)
        root = np.sqrt(lam_diag[start : start + step])
        for c in range(k):  # classes, not samples
            np.multiply(xs, root[:, c, None], out=W)
            syrk_t(W, out=D[c].T, counts=counts, symmetrize=False)
    F = symmetrize_upper(F).T  # symmetric: its C-ordered transpose is the same matrix
    F4 = F.reshape(r, k, r, k)
    for c in range(k):
        F4[:, c, :, c] = symmetrize_upper(D[c].T)
    return F


class DenseFisher(CurvatureOperator):
    """The exact Fisher ``F + l2·mask`` (see module doc), solved densely.

    Parameters
    ----------
    objective : Objective
    theta : array of shape (n_params,)
    fisher_type : {"exact", "mc", "empirical"} or FisherType, default "exact"
    mc_samples : int, default 1
        Labels drawn per sample for ``fisher_type="mc"``.
    random_state : int, Generator or None
        Seed for the Monte-Carlo labels.
    method : {"auto", "parameter", "sample"}, default "auto"
    reduction : {"mean", "sum"}, default "mean"
    """

    def __init__(
        self,
        objective,
        theta: Array,
        fisher_type="exact",
        mc_samples: int = 1,
        random_state: Seed = None,
        method: str = "auto",
        reduction: str = "mean",
    ):
        super().__init__(objective, reduction)
        self.fisher_type = parse_fisher_type(fisher_type)
        self.method = check_choice(method, "method", ("auto", "parameter", "sample"))
        self.theta = np.asarray(theta, dtype=self.dtype)
        self.cache = objective.forward(self.theta)
        # U is built when first needed: the softmax class-block build never needs it
        self._U, self._factor_args = None, (mc_samples, random_state)
        if self.fisher_type is FisherType.EXACT:
            check_output_curvature_memory(self.cache.outputs)
            n_factors = objective.model.n_outputs
        elif self.fisher_type is FisherType.EMPIRICAL:
            n_factors = 1
        else:
            n_factors = check_positive_int(mc_samples, "mc_samples")
        self.n_rows = n_factors * objective.n_samples
        self._s = self.scale / objective.n_samples
        self._matrix = None
        self._grads = None
        self._solvers: dict = {}

    # -------------------------------------------------------------- shared pieces
    @property
    def U(self) -> Array:
        """Output-space factors (:func:`~natgrad_core.curvature.base.output_factors`),
        shape (n_rows // n_samples, n_samples, n_outputs)."""
        if self._U is None:
            self._U = output_factors(
                self.objective, self.theta, self.fisher_type, *self._factor_args
            )
        return self._U

    @property
    def layer_grads(self) -> list[Array]:
        """Back-propagated factors g_l, each (n_factors, n_samples, fan_out_l)."""
        if self._grads is None:
            self._grads = backpropagate_factors(self.objective, self.theta, self.cache, self.U)
        return self._grads

    def _output_matrices(self) -> Array:
        if self.fisher_type is FisherType.EXACT:
            check_output_curvature_memory(self.cache.outputs)
            return self.objective.model.head.lam(self.cache.outputs)
        return np.einsum("mni,mnj->nij", self.U, self.U)

    def matrix(self) -> Array:
        """The parameter-space matrix ``C`` (built once, then cached)."""
        if self._matrix is None:
            # the matrix and its damped copy for the factorization
            check_memory(
                (self.n_params, self.n_params),
                self.dtype.itemsize,
                f"the exact Fisher in parameter space ({self.n_params} parameters)",
                "solver='cg' (matrix-free), 'kfac' or 'diag', or a smaller model",
                copies=2,
            )
            model = self.objective.model
            if len(model.layers) == 1 and model.n_outputs == 1:
                F = self._weighted_gram()
            elif len(model.layers) == 1:
                # the n_factors columns are pulled back through the one layer inside the
                # class-block build (counted there in flops), never through ``backward``
                self.objective.counts.n_backprop += self.n_rows // self.objective.n_samples
                Xb, counts = self.cache.inputs[0], self.objective.counts
                if self.fisher_type is FisherType.EXACT and model.head.name == "softmax":
                    p = model.head.predict(self.cache.outputs)
                    F = softmax_class_block_fisher(Xb, p, counts)
                else:
                    F = class_block_fisher(Xb, self._output_matrices(), counts)
                F *= self._s
            else:
                F = self._syrk_per_example_grads()
            add_to_diagonal(F, self._penalty_diag())
            self._matrix = F
        return self._matrix

    def _weighted_gram(self) -> Array:
        """``s · X̄ᵀ diag(w) X̄`` for a one-layer, one-output model (binary logistic
        regression, a single linear regression): its per-example gradients are
        ``U[m, n] · x̄ₙ``, so ``F = s Σₙ wₙ x̄ₙ x̄ₙᵀ`` with ``wₙ = Σₘ U[m, n]²`` (exact: the
        1×1 ``Λ(zₙ)``, no factor needed). One syrk of ``√w · X̄`` over row blocks of
        :data:`~natgrad_core.models.mlp.ROW_BLOCK_BYTES`, each weighted into one reusable
        C-ordered buffer: the same layout as ``X̄``, so the weighting streams through
        memory, and syrk reads the buffer as its F-ordered transpose (no copy)."""
        Xb, counts = self.cache.inputs[0], self.objective.counts
        n, p = Xb.shape
        counts.n_backprop += self.n_rows // n  # the factors reach X̄ with no propagation
        if self.fisher_type is FisherType.EXACT:
            head = self.objective.model.head
            w = head.lam_operator(self.cache.outputs)(np.ones((n, 1), dtype=self.dtype))[:, 0]
        else:
            w = np.einsum("mn,mn->n", self.U[..., 0], self.U[..., 0])
        root = np.sqrt(w)
        step = min(n, max(1, ROW_BLOCK_BYTES // (p * self.dtype.itemsize)))
        buffer = np.empty((step, p), dtype=self.dtype)
        if step == n:
            # one block: numpy's own syrk fills both triangles (faster at small sizes than
            # syrk into an F-ordered matrix and symmetrizing); the symmetric C-ordered
            # result's transpose is the same matrix, F-ordered, as LAPACK wants it
            np.multiply(Xb, root[:, None], out=buffer)
            add_flops(counts, buffer.size)  # one multiply per entry of S
            return syrk_t(buffer, alpha=self._s, counts=counts).T
        F = np.zeros(self.shape, dtype=self.dtype, order="F")
        for start in range(0, n, step):
            S = buffer[: min(step, n - start)]
            np.multiply(Xb[start : start + step], root[start : start + step, None], out=S)
            add_flops(counts, S.size)  # one multiply per entry of S
            syrk_t(S, out=F, alpha=self._s, counts=counts, symmetrize=False)
        return symmetrize_upper(F)

    def _syrk_per_example_grads(self) -> Array:
        """``s · SᵀS`` with the rows of S (per-example gradients of every factor column)
        written chunk by chunk into one reusable F-ordered buffer (BLAS's own layout: its
        syrk runs fastest on it) and accumulated by syrk into the upper triangle of an
        F-ordered matrix, symmetrized once: no copy of S and no temporary of size P²."""
        m, n, p = self.U.shape[0], self.objective.n_samples, self.n_params
        counts = self.objective.counts
        F = np.zeros(self.shape, dtype=self.dtype, order="F")
        step = min(n, max(1, _CHUNK_ELEMENTS // max(1, m * p)))
        buffer = np.empty(m * step * p, dtype=self.dtype)
        for start in range(0, n, step):
            rows = slice(start, start + step)
            inputs = [a[rows] for a in self.cache.inputs]
            grads = [g[:, rows] for g in self.layer_grads]
            chunk = len(inputs[0])
            # S F-ordered, (n_factors · chunk, n_params), seen as (n_factors, chunk, n_params)
            S = buffer[: m * chunk * p].reshape((m * chunk, p), order="F")
            # one multiply per entry of S
            add_flops(counts, m * chunk * p)
            self.objective.model.per_example_grads(
                type(self.cache)(inputs, [], None),
                grads,
                S.T.reshape(p, m, chunk).transpose(1, 2, 0),
            )
            syrk_t(S, out=F, alpha=self._s, counts=counts, symmetrize=False)
        return symmetrize_upper(F)

    def _count_S_product(self) -> None:
        """Flops of one product with S or Sᵀ: per layer, a (n, rows) × (rows, fan_out) GEMM
        and the contraction over fan_out of the n_factors back-propagated columns."""
        m, n = self.U.shape[:2]
        add_flops(
            self.objective.counts,
            sum(
                2 * n * g.shape[-1] * (a.shape[1] + m)
                for a, g in zip(self.cache.inputs, self.layer_grads)
            ),
        )

    def _S_times(self, w: Array) -> Array:
        """S w for w of shape (n_params,) → (n_factors, n_samples)."""
        self._count_S_product()
        blocks = self.objective.model.unpack(w)
        return sum(
            np.einsum("nj,mnj->mn", a @ W, g)
            for a, W, g in zip(self.cache.inputs, blocks, self.layer_grads)
        )

    def _St_times(self, u: Array) -> Array:
        """Sᵀ u for u of shape (n_factors, n_samples) → (n_params,)."""
        self._count_S_product()
        return np.concatenate(
            [
                (a.T @ np.einsum("mn,mnj->nj", u, g)).ravel()
                for a, g in zip(self.cache.inputs, self.layer_grads)
            ]
        )

    def _matvec(self, v):
        prefer_matrix = self.method == "parameter" or (
            self.method == "auto" and self.n_rows >= self.n_params
        )
        if self._matrix is not None or prefer_matrix:
            add_flops(self.objective.counts, 2 * self.n_params**2)
            return self.matrix() @ v
        return self._s * self._St_times(self._S_times(v)) + self._penalty_diag() * v

    def _to_dense(self):
        return self.matrix().copy()

    # -------------------------------------------------------------- solves
    def _E(self, damping: float) -> Array:
        return self._penalty_diag() + damping

    def _choose(self, damping: float) -> str:
        if self.method == "parameter" or (self.method == "auto" and self.n_rows >= self.n_params):
            return "parameter"
        feasible = bool(np.all(self._E(damping) > 0))
        if self.method == "sample":
            if not feasible:
                raise ValueError(
                    "method='sample' needs a positive diagonal term: damping > 0, or "
                    f"alpha > 0 and fit_intercept=False; got damping={damping}, l2={self.l2}."
                )
            return "sample"
        return "sample" if feasible else "parameter"

    def solve_method(self, damping: float = 0.0) -> str:
        """Which algebra :meth:`solve` will use for this damping: "parameter" or "sample"."""
        return self._choose(float(damping))

    def _solver(self, damping: float, method: str) -> SymmetricSolver:
        key = (method, damping)
        if key not in self._solvers:
            if method == "parameter":
                A = add_to_diagonal(self.matrix().copy(order="K"), damping)
            else:
                A = self._gram(self._E(damping))
            self._solvers[key] = SymmetricSolver(A, self.objective.counts, "Fisher")
        return self._solvers[key]

    def _gram(self, E: Array) -> Array:
        """I/s + S E⁻¹ Sᵀ of shape (n_rows, n_rows), built layer by layer."""
        m, n = self.U.shape[:2]
        # K, the tiled Ka and the syrk product are alive at once
        check_memory(
            (m * n, m * n),
            self.dtype.itemsize,
            f"the exact Fisher in sample space ({n} samples x {m} factors)",
            "a smaller batch_size, solver='cg' (matrix-free) or 'kfac'",
            copies=3,
        )
        K = np.eye(m * n, dtype=self.dtype) / self._s
        E_blocks = self.objective.model.unpack(E)
        for E_l, a, g in zip(E_blocks, self.cache.inputs, self.layer_grads):
            # E is constant across a weight row, so E⁻¹ acts on the ā side only
            e_rows = E_l[:, 0]
            Ka = (a / e_rows) @ a.T
            add_flops(self.objective.counts, 2 * n * n * a.shape[1])
            gf = g.reshape(m * n, -1)
            K += np.tile(Ka, (m, m)) * syrk_t(gf.T, counts=self.objective.counts)
        return K

    def _solve(self, v, damping):
        method = self._choose(damping)
        solver = self._solver(damping, method)
        self.status = solver.status
        if method == "parameter":
            return solver.solve(v)
        E_inv = 1.0 / self._E(damping)
        if v.ndim == 2:
            return np.column_stack([self._woodbury(col, E_inv, solver) for col in v.T])
        return self._woodbury(v, E_inv, solver)

    def _woodbury(self, v, E_inv, solver):
        ev = E_inv * v
        m, n = self.U.shape[:2]
        u = solver.solve(self._S_times(ev).ravel()).reshape(m, n)
        return ev - E_inv * self._St_times(u)
