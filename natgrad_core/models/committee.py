"""The soft committee machine of on-line learning theory, as an :class:`MLP`.

A soft committee machine with ``n_hidden`` units maps an input ``u`` of shape
(n_features,) to ``Σ_k erf(h_k/√2)`` with fields ``h = Wᵀu``, its hidden-to-output weights
fixed to 1 (Saad & Solla 1995, "On-line learning in soft committee machines", Phys. Rev.
E 52, 4225). Inputs are ``u = x/√N`` with ``x ~ N(0, I_N)`` and ``N = n_features``, so a
weight vector with entries of order 1 gives fields of order 1 and the order parameters are

    Q = WᵀW / N   (student–student),   R = WᵀB / N   (student–teacher),   T = BᵀB / N

for a student ``W`` of shape (N, K) and a teacher ``B`` of shape (N, M). As an
:class:`MLP` it is ``N → K erf → 1`` with the Gaussian head (unit variance, so the loss is
half the squared error) and no intercepts; the first ``N·K`` entries of ``theta`` are
``W`` in row-major order and the last ``K`` are the output weights, held at 1.

This module gives what the theory needs and the library lacks: the closed-form
generalization error, the exact Fisher of the first-layer weights, and a seeded stream
of teacher-labelled examples (one fresh example per step is on-line learning).
"""

from __future__ import annotations

import numpy as np

from .._typing import Array, Seed
from .._validation import check_finite_array, check_positive_int
from .mlp import MLP

__all__ = [
    "TeacherStream",
    "committee_fisher",
    "committee_natural_gradient",
    "committee_overlaps",
    "committee_params",
    "generalization_error",
    "soft_committee",
]


def soft_committee(n_features: int, n_hidden: int) -> MLP:
    """The ``n_features → n_hidden erf → 1`` network with the unit-variance Gaussian head
    and no intercepts (float64)."""
    return MLP(n_features, 1, (n_hidden,), "erf", "gaussian", fit_intercept=False)


def _check_weights(W, name: str, n_features: int | None = None) -> Array:
    W = check_finite_array(W, name, ndim=2, dtype=np.float64)
    if n_features is not None and W.shape[0] != n_features:
        raise ValueError(
            f"Shape mismatch: expected {name} with {n_features} rows, got shape {W.shape}."
        )
    return W


def committee_params(model: MLP, W) -> Array:
    """``theta`` of ``model`` (from :func:`soft_committee`) with first-layer weights ``W``
    of shape (n_features, n_hidden) and every output weight 1."""
    lay = model.layers
    if len(lay) != 2 or lay[1].fan_out != 1 or model.fit_intercept:
        raise ValueError(f"expected a soft committee machine (soft_committee), got {model!r}.")
    W = _check_weights(W, "W", model.n_features)
    if W.shape[1] != lay[0].fan_out:
        raise ValueError(
            f"Shape mismatch: expected W with {lay[0].fan_out} columns, got shape {W.shape}."
        )
    return model.pack([W, np.ones((lay[1].fan_in, 1))])


def committee_overlaps(W, B) -> tuple[Array, Array, Array]:
    """The order parameters ``(Q, R, T) = (WᵀW, WᵀB, BᵀB) / N`` of a student ``W`` of shape
    (N, K) and a teacher ``B`` of shape (N, M)."""
    W = _check_weights(W, "W")
    B = _check_weights(B, "B", W.shape[0])
    n = W.shape[0]
    return W.T @ W / n, W.T @ B / n, B.T @ B / n


def _arcsin_sum(C, a, b) -> float:
    """``Σ_ij arcsin(C_ij / √((1 + a_i)(1 + b_j)))``."""
    return float(np.arcsin(C / np.sqrt(np.outer(1.0 + a, 1.0 + b))).sum())


def generalization_error(Q, R, T) -> float:
    """``ε_g = ½ E_u[(Σ_k erf(h_k/√2) − Σ_n erf(y_n/√2))²]`` in closed form:

        ε_g = (1/π) [ Σ_ik arcsin(Q_ik / √((1+Q_ii)(1+Q_kk)))
                    + Σ_nm arcsin(T_nm / √((1+T_nn)(1+T_mm)))
                    − 2 Σ_in arcsin(R_in / √((1+Q_ii)(1+T_nn))) ]

    (Saad & Solla 1995, eq. (5)), from ``E[erf(a/√2) erf(b/√2)] = (2/π) arcsin(c /
    √((1+σ_a²)(1+σ_b²)))`` for centred jointly Gaussian fields with covariance c.

    Q : array of shape (K, K);  R : array of shape (K, M);  T : array of shape (M, M).
    """
    Q = check_finite_array(Q, "Q", ndim=2, dtype=np.float64)
    R = check_finite_array(R, "R", ndim=2, dtype=np.float64)
    T = check_finite_array(T, "T", ndim=2, dtype=np.float64)
    k, m = R.shape
    if Q.shape != (k, k) or T.shape != (m, m):
        raise ValueError(
            f"Shape mismatch: expected Q ({k}, {k}) and T ({m}, {m}) for R {R.shape}, "
            f"got Q {Q.shape} and T {T.shape}."
        )
    q, t = np.diag(Q), np.diag(T)
    total = _arcsin_sum(Q, q, q) + _arcsin_sum(T, t, t) - 2.0 * _arcsin_sum(R, q, t)
    return total / np.pi


def committee_fisher(W) -> Array:
    """The exact Fisher of the first-layer weights, ``F = E_u[Jᵀ J]`` (``J = ∂output/∂W``,
    unit-variance Gaussian head, ``u = x/√N``, ``x ~ N(0, I_N)``), computed analytically.

    Block ``(k, l)`` (units k and l) of shape (N, N) is ``E[φ'(h_k) φ'(h_l) u uᵀ]`` with
    ``φ'(h) = √(2/π) exp(−h²/2)``. The Gaussian integral
    ``E_x[exp(−½ xᵀ M x) x xᵀ] = det(I + M)^{−1/2} (I + M)^{−1}`` with
    ``M = U Uᵀ``, ``U = [w_k, w_l]/√N`` (rank ≤ 2) gives

        F_kl = (2/(π N)) det(I₂ + UᵀU)^{−1/2} (I_N − U (I₂ + UᵀU)^{−1} Uᵀ)

    (Woodbury; Yang & Amari 1998, "Complexity issues in natural gradient descent method
    for training multilayer perceptrons", Neural Comput. 10, 2137, derive the same blocks).
    The result, of shape (N·K, N·K), is ordered as ``theta``'s first ``N·K`` entries
    (``W`` row-major: index ``i·K + k``). It is singular when two units coincide
    (``w_k = w_l``): the symmetric plateau is a singularity of the Fisher.

    W : array of shape (N, K).
    """
    W = _check_weights(W, "W")
    n, k = W.shape
    blocks = np.empty((k, k, n, n))
    eye = np.eye(n)
    for a in range(k):  # K² blocks of a K-unit committee, never a loop over samples
        for b in range(a, k):
            U = W[:, [a, b]] / np.sqrt(n)
            small = np.eye(2) + U.T @ U
            scale = 2.0 / (np.pi * n) / np.sqrt(np.linalg.det(small))
            blocks[a, b] = scale * (eye - U @ np.linalg.solve(small, U.T))
            blocks[b, a] = blocks[a, b]
    return blocks.transpose(2, 0, 3, 1).reshape(n * k, n * k)


def committee_natural_gradient(W, grad) -> Array:
    """``F(W)⁻¹ grad`` for the exact Fisher of :func:`committee_fisher`, in ``O(N K² + K⁶)``
    flops instead of the dense solve's ``O((N K)³)``.

    Every low-rank term of ``F`` lies in ``S = span(w_1..w_K)``, so ``F`` maps vectors
    whose N-columns lie in ``S`` to ``S`` and those orthogonal to ``S`` to themselves. With
    an orthonormal basis ``P`` of ``S`` (N × K) and ``grad_k = P a_k + r_k`` (``r_k ⊥ S``):

        Σ_l c_kl x⊥_l = r_k                       (K × K system, every ⊥ direction at once)
        Σ_l P ᵀ F_kl P x∥_l = a_k                  (K² × K² system)

    where ``F_kl = c_kl (I − U_kl (I₂ + U_klᵀU_kl)⁻¹ U_klᵀ)`` with the scale ``c_kl =
    (2/(πN)) det(I₂ + U_klᵀU_kl)^{−1/2}``, as in :func:`committee_fisher`. Both systems are
    solved by LU; a singular Fisher (two identical units) raises ``LinAlgError``.

    W : array of shape (N, K);  grad : array of shape (N·K,) ordered as ``theta``
    (``W`` row-major). Returns an array of shape (N·K,).
    """
    W = _check_weights(W, "W")
    n, k = W.shape
    G = check_finite_array(grad, "grad", ndim=1, dtype=np.float64)
    if G.shape != (n * k,):
        raise ValueError(f"Shape mismatch: expected grad of shape ({n * k},), got {G.shape}.")
    G = G.reshape(n, k)
    P = np.linalg.qr(W)[0]  # (N, K); a basis of S (K columns even if W has lower rank)
    A = P.T @ G  # (K, K): column l holds a_l
    Rperp = G - P @ A
    C = np.empty((k, k))
    inner = np.empty((k, k, k, k))  # [k, l] -> Pᵀ F_kl P of shape (K, K)
    for a in range(k):  # K² pairs of units, never a loop over samples
        for b in range(a, k):
            U = W[:, [a, b]] / np.sqrt(n)
            small = np.eye(2) + U.T @ U
            C[a, b] = C[b, a] = 2.0 / (np.pi * n) / np.sqrt(np.linalg.det(small))
            V = P.T @ U
            inner[a, b] = inner[b, a] = C[a, b] * (np.eye(k) - V @ np.linalg.solve(small, V.T))
    x_perp = np.linalg.solve(C, Rperp.T).T
    big = inner.transpose(0, 2, 1, 3).reshape(k * k, k * k)  # (unit k, coord) x (unit l, coord)
    x_par = np.linalg.solve(big, A.T.reshape(-1)).reshape(k, k).T
    return (x_perp + P @ x_par).reshape(-1)


class TeacherStream:
    """A seeded stream of examples ``(u, y)`` labelled by a soft committee teacher.

    ``u = x/√N`` with ``x ~ N(0, I_N)`` and ``y = Σ_n erf(B_nᵀ u/√2)`` (noise-free), the
    teacher's output computed by the :func:`soft_committee` network.

    Parameters
    ----------
    B : array of shape (N, M) — the teacher's weights.
    random_state : seed of the inputs.
    """

    def __init__(self, B, random_state: Seed = None):
        self.B = _check_weights(B, "B")
        self.n_features = self.B.shape[0]
        self.model = soft_committee(self.n_features, self.B.shape[1])
        self._theta = committee_params(self.model, self.B)
        self._rng = np.random.default_rng(random_state)

    def draw(self, n_samples: int) -> tuple[Array, Array]:
        """The next ``n_samples`` fresh examples: ``U`` of shape (n_samples, N) and ``y`` of
        shape (n_samples,)."""
        n_samples = check_positive_int(n_samples, "n_samples")
        U = self._rng.standard_normal((n_samples, self.n_features)) / np.sqrt(self.n_features)
        return U, self.model.predict_outputs(self._theta, U)[:, 0]
