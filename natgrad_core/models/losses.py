"""Output distributions: the only place that knows how network outputs become a likelihood.

Every model in natgrad maps an input to a vector of outputs ``z`` of length ``n_outputs``
and scores it with the negative log-likelihood of one of the distributions below. Each
distribution provides, per sample,

* ``nll(z, Y)``          negative log-likelihood, shape (n_samples,);
* ``grad(z, Y)``         ∂nll/∂z, shape (n_samples, n_outputs);
* ``nll_and_grad(z, Y, scale)``  ``nll(z, Y)`` and ``scale · grad(z, Y)`` in one fused pass
                         (what a loss-and-gradient evaluation needs), the nll equal to ``nll``'s;
* ``lam(z)``             the output-space Fisher Λ = E_{y~p(·|z)}[∇_z nll ∇_z nllᵀ], which for
                         these exponential families with canonical link equals the Hessian
                         ∂²nll/∂z², shape (n_samples, n_outputs, n_outputs);
* ``lam_mv(z, U)``       Λ @ u for each sample without forming Λ;
* ``lam_operator(z)``    ``U ↦ lam_mv(z, U)`` with what depends on z alone (the probabilities)
                         computed once: a matrix-free Fisher applies it many times per point;
* ``sqrt_lam(z)``        a factor M with Λ = M Mᵀ, shape (n_samples, n_outputs, n_outputs):
                         column c is the output-gradient to back-propagate for the exact Fisher;
* ``sample(z, rng, k)``  k encoded label draws from p(·|z) for the Monte-Carlo Fisher;
* ``kl(z_p, z_q)``       KL(p(·|z_p) ‖ p(·|z_q)) per sample.

Targets are *encoded* once by ``encode``: one-hot rows for the softmax, {0, 1} columns for
the sigmoid, real columns for the Gaussian, all of shape (n_samples, n_outputs).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, logsumexp, softmax

from .._typing import Array

__all__ = ["Bernoulli", "Categorical", "Gaussian", "OutputDistribution", "get_head"]


class OutputDistribution:
    """Base class. Subclasses implement the per-sample formulas listed in the module doc."""

    name: str = ""

    def n_outputs(self, n_targets: int) -> int:
        """Number of network outputs needed for ``n_targets`` classes or target columns."""
        return n_targets

    def encode(self, y: Array, n_targets: int, dtype=np.float64) -> Array:
        raise NotImplementedError

    def nll(self, z: Array, Y: Array) -> Array:
        raise NotImplementedError

    def grad(self, z: Array, Y: Array) -> Array:
        raise NotImplementedError

    def nll_and_grad(self, z: Array, Y: Array, scale: float = 1.0) -> tuple[Array, Array]:
        """``(nll(z, Y), scale · grad(z, Y))``, shapes (n_samples,) and (n_samples, n_outputs).

        Subclasses fuse the two where they share work; the nll is always ``nll``'s, to
        the last bit, so that a loss from here and one from ``nll`` compare exactly.
        """
        return self.nll(z, Y), scale * self.grad(z, Y)

    def lam(self, z: Array) -> Array:
        raise NotImplementedError

    def lam_mv(self, z: Array, U: Array) -> Array:
        return self.lam_operator(z)(U)

    def lam_operator(self, z: Array):
        L = self.lam(z)
        return lambda U: np.einsum("nij,nj->ni", L, U)

    def sqrt_lam(self, z: Array) -> Array:
        raise NotImplementedError

    def sample(self, z: Array, rng: np.random.Generator, n_draws: int) -> Array:
        raise NotImplementedError

    def kl(self, z_p: Array, z_q: Array) -> Array:
        raise NotImplementedError

    def predict(self, z: Array) -> Array:
        """Mean of the predictive distribution (class probabilities for classifiers)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Categorical(OutputDistribution):
    """Softmax cross-entropy over ``n_classes`` outputs. Λ = diag(p) − p pᵀ (rank K − 1)."""

    name = "softmax"

    def encode(self, y, n_targets, dtype=np.float64):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"softmax head expects integer class labels of shape (n_samples,), "
                f"got an array of shape {y.shape}."
            )
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
                raise ValueError(
                    f"softmax head expects integer class labels in [0, {n_targets}), "
                    f"got values of dtype {y.dtype}."
                )
            y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= n_targets):
            raise ValueError(
                f"softmax head expects class labels in [0, {n_targets}), "
                f"got labels in [{y.min()}, {y.max()}]."
            )
        Y = np.zeros((y.shape[0], n_targets), dtype=dtype)
        Y[np.arange(y.shape[0]), y] = 1.0
        return Y

    @staticmethod
    def _normalize(z):
        """``(log Σₖ exp zₙₖ, E)`` where ``E`` of shape (n_classes, n_samples) holds the
        probabilities pₙₖ = exp(zₙₖ − mₙ) / Σⱼ exp(zₙⱼ − mₙ), mₙ = maxₖ zₙₖ: one exp per
        element. The work runs on the class-major transpose, where the reductions over
        classes are contiguous rows (numpy reduces a short trailing axis slowly)."""
        E = z.T.copy(order="C")
        m = E.max(axis=0)
        E -= m
        np.exp(E, out=E)
        s = E.sum(axis=0)
        E /= s
        np.log(s, out=s)
        s += m
        return s, E

    def nll(self, z, Y):
        # nllₙ = log Σₖ exp zₙₖ − ⟨Yₙ, zₙ⟩
        nll, _ = self._normalize(z)
        nll -= np.einsum("nk,nk->n", Y, z)
        return nll

    def grad(self, z, Y):
        return self.predict(z) - Y

    def nll_and_grad(self, z, Y, scale=1.0):
        nll, E = self._normalize(z)
        nll -= np.einsum("nk,nk->n", Y, z)
        E -= Y.T
        E *= scale
        return nll, E.T

    def predict(self, z):
        return softmax(z, axis=-1)

    def lam(self, z):
        p = self.predict(z)
        return p[:, :, None] * np.eye(z.shape[1], dtype=z.dtype) - p[:, :, None] * p[:, None, :]

    def lam_operator(self, z):
        p = self.predict(z)
        return lambda U: p * U - p * np.einsum("nk,nk->n", p, U)[:, None]

    def sqrt_lam(self, z):
        # M = diag(√p) − p √pᵀ satisfies M Mᵀ = diag(p) − p pᵀ because Σ p = 1;
        # column c is √p_c (e_c − p): the output gradient of label c, weighted by √p_c.
        p = self.predict(z)
        sp = np.sqrt(p)
        return sp[:, :, None] * np.eye(z.shape[1], dtype=z.dtype) - p[:, :, None] * sp[:, None, :]

    def sample(self, z, rng, n_draws):
        p = self.predict(z)
        cum = np.cumsum(p, axis=1)
        u = rng.random((n_draws, z.shape[0], 1))
        labels = np.minimum((u > cum[None]).sum(axis=2), z.shape[1] - 1)
        return np.eye(z.shape[1], dtype=z.dtype)[labels]

    def kl(self, z_p, z_q):
        log_p = z_p - logsumexp(z_p, axis=1, keepdims=True)
        log_q = z_q - logsumexp(z_q, axis=1, keepdims=True)
        return np.einsum("nk,nk->n", np.exp(log_p), log_p - log_q)


class Bernoulli(OutputDistribution):
    """Sigmoid cross-entropy, one independent Bernoulli per output. Λ = diag(p (1 − p)).

    For binary classification ``n_outputs(2) == 1``: a single logit, as in scikit-learn.
    """

    name = "sigmoid"

    def n_outputs(self, n_targets):
        return 1 if n_targets == 2 else n_targets

    def encode(self, y, n_targets, dtype=np.float64):
        y = np.asarray(y)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != self.n_outputs(n_targets):
            raise ValueError(
                f"sigmoid head expects targets of shape (n_samples,) or "
                f"(n_samples, {self.n_outputs(n_targets)}), got {y.shape}."
            )
        if y.size and not np.all((y == 0) | (y == 1)):
            raise ValueError(
                f"sigmoid head expects labels in {{0, 1}}, got values {np.unique(y)[:5]}."
            )
        return y.astype(dtype)

    def nll(self, z, Y):
        return (np.logaddexp(0.0, z) - Y * z).sum(axis=1)

    def grad(self, z, Y):
        return expit(z) - Y

    def nll_and_grad(self, z, Y, scale=1.0):
        G = expit(z)
        G -= Y
        G *= scale
        return self.nll(z, Y), G

    def predict(self, z):
        return expit(z)

    def _var(self, z):
        return expit(z) * expit(-z)

    def lam(self, z):
        return self._var(z)[:, :, None] * np.eye(z.shape[1], dtype=z.dtype)

    def lam_operator(self, z):
        var = self._var(z)
        return lambda U: var * U

    def sqrt_lam(self, z):
        return np.sqrt(self._var(z))[:, :, None] * np.eye(z.shape[1], dtype=z.dtype)

    def sample(self, z, rng, n_draws):
        return (rng.random((n_draws,) + z.shape) < expit(z)[None]).astype(z.dtype)

    def kl(self, z_p, z_q):
        p = expit(z_p)
        return (
            p * (log_expit(z_p) - log_expit(z_q)) + (1 - p) * (log_expit(-z_p) - log_expit(-z_q))
        ).sum(axis=1)


class Gaussian(OutputDistribution):
    """Gaussian with fixed variance σ²: nll = ‖y − z‖² / (2σ²) (the constant is dropped).

    Λ = I / σ². With σ² = 1 this is half the squared error, as in scikit-learn's MLPRegressor
    summed over outputs.
    """

    name = "gaussian"

    def __init__(self, variance: float = 1.0):
        if not np.isfinite(variance) or variance <= 0:
            raise ValueError(f"variance must be a positive finite number, got {variance!r}.")
        self.variance = float(variance)

    def __repr__(self):
        return f"Gaussian(variance={self.variance})"

    def encode(self, y, n_targets, dtype=np.float64):
        y = np.asarray(y, dtype=dtype)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != n_targets:
            raise ValueError(
                f"gaussian head expects targets of shape (n_samples, {n_targets}), got {y.shape}."
            )
        return y

    def nll(self, z, Y):
        return 0.5 * ((z - Y) ** 2).sum(axis=1) / self.variance

    def grad(self, z, Y):
        return (z - Y) / self.variance

    def predict(self, z):
        return z

    def lam(self, z):
        eye = np.eye(z.shape[1], dtype=z.dtype) / self.variance
        return np.broadcast_to(eye, (z.shape[0],) + eye.shape).copy()

    def lam_operator(self, z):
        return lambda U: U / self.variance

    def sqrt_lam(self, z):
        eye = np.eye(z.shape[1], dtype=z.dtype) / np.sqrt(self.variance)
        return np.broadcast_to(eye, (z.shape[0],) + eye.shape).copy()

    def sample(self, z, rng, n_draws):
        noise = rng.standard_normal((n_draws,) + z.shape).astype(z.dtype)
        return z[None] + np.sqrt(self.variance) * noise

    def kl(self, z_p, z_q):
        return 0.5 * ((z_p - z_q) ** 2).sum(axis=1) / self.variance


_HEADS = {
    "softmax": Categorical,
    "sigmoid": Bernoulli,
    "logistic": Bernoulli,
    "gaussian": Gaussian,
    "squared_error": Gaussian,
}


def get_head(head: str | OutputDistribution) -> OutputDistribution:
    """Return the output distribution named ``head`` (or ``head`` itself if already one)."""
    if isinstance(head, OutputDistribution):
        return head
    if not isinstance(head, str):
        raise TypeError(f"head must be a string or an OutputDistribution, got {type(head)}.")
    try:
        return _HEADS[head]()
    except KeyError:
        raise ValueError(f"Unknown head {head!r}; expected one of {sorted(_HEADS)}.") from None
