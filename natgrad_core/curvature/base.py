"""Fisher types, output-space factors, and the linear-operator base class of every curvature.

Scaling contract (one for every representation)
-----------------------------------------------
With ``reduction="mean"`` (default) an operator represents the curvature of the mean
objective ``L`` of :class:`~natgrad_core.models.objective.Objective`:

    C = F + l2 · diag(mask),      F = (1/N) Σₙ Jₙᵀ Λ̃ₙ Jₙ,      l2 = α / N_total,

and with ``reduction="sum"`` the curvature of ``N · L``: ``C_sum = N · C_mean``. ``damping``
passed to :meth:`CurvatureOperator.solve` is in the same units as the operator:
``solve(v, damping)`` returns ``(C + damping · I)⁻¹ v``.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._memory import check_memory
from .._typing import Array, Seed
from .._validation import check_choice, check_finite_array, check_nonnegative, check_positive_int

__all__ = [
    "CurvatureOperator",
    "FisherType",
    "Reduction",
    "backpropagate_factors",
    "check_output_curvature_memory",
    "output_factors",
    "parse_fisher_type",
]


class FisherType(str, Enum):
    """Which expectation over labels defines the Fisher.

    EXACT = "exact"
        The true Fisher: labels drawn from the model's *own* predictive distribution,
        expectation taken in closed form through Λ(z). Also called "true" or "type-2"
        (curvlinops). For the softmax, sigmoid and Gaussian heads (canonical links) it equals
        the generalized Gauss–Newton matrix and, for logistic regression, the Hessian.
    MC = "mc"
        Monte-Carlo estimate of the same expectation from ``mc_samples`` labels sampled from
        the model (seeded). Unbiased for the exact Fisher; converges to it as samples grow.
    EMPIRICAL = "empirical"
        Uses the *observed* labels: the mean outer product of per-example gradients. Not an
        estimate of the Fisher: it vanishes where the model fits the data, is far from it
        early in training, and its "natural gradient" can point in poor directions
        (Kunstner, Balles & Hennig 2019, "Limitations of the empirical Fisher"). It is what
        Adam/RMSprop's squared-gradient statistics approximate.
    """

    EXACT = "exact"
    MC = "mc"
    EMPIRICAL = "empirical"


_FISHER_ALIASES = {"true": "exact", "type-2": "exact", "monte-carlo": "mc", "montecarlo": "mc"}


def parse_fisher_type(value) -> FisherType:
    """Return the :class:`FisherType` named by ``value`` (accepts "true" and "type-2")."""
    if isinstance(value, FisherType):
        return value
    if not isinstance(value, str):
        raise TypeError(f"fisher must be a string or FisherType, got {type(value).__name__}.")
    return check_choice(_FISHER_ALIASES.get(value, value), "fisher type", FisherType)


class Reduction(str, Enum):
    MEAN = "mean"
    SUM = "sum"


def output_factors(
    objective, theta: Array, fisher_type, mc_samples: int = 1, random_state: Seed = None
) -> Array:
    """Output-space factors U of shape (n_factors, n_samples, n_outputs) with

        Λ̃ₙ = Σₘ U[m, n] U[m, n]ᵀ

    exact: the columns of √Λ(zₙ) (n_factors = n_outputs); mc: ∇_z nll(zₙ, ỹ)/√k for k sampled
    labels ỹ ~ p(·|zₙ); empirical: ∇_z nll(zₙ, yₙ) for the observed label (n_factors = 1).
    Back-propagating each factor gives the rows of the matrix S with F = SᵀS / N.
    """
    z = objective.forward(theta).outputs
    return _output_factors_at(
        objective.model.head, z, objective.Y, fisher_type, mc_samples, random_state
    )


def _output_factors_at(head, z: Array, Y: Array, fisher_type, mc_samples, random_state) -> Array:
    """:func:`output_factors` for outputs ``z`` and encoded labels ``Y`` of the same rows."""
    fisher_type = parse_fisher_type(fisher_type)
    if fisher_type is FisherType.EXACT:
        check_output_curvature_memory(z)
        return np.ascontiguousarray(head.sqrt_lam(z).transpose(2, 0, 1))
    if fisher_type is FisherType.EMPIRICAL:
        return head.grad(z, Y)[None]
    k = check_positive_int(mc_samples, "mc_samples")
    rng = np.random.default_rng(random_state)
    Y_sampled = head.sample(z, rng, k)
    return head.grad(z[None], Y_sampled) / np.sqrt(k)


def check_output_curvature_memory(z: Array) -> None:
    """Refuse (:class:`~natgrad_core._memory.MemoryLimitError`) to build Λ or √Λ of shape
    (n_samples, n_outputs, n_outputs) for outputs ``z`` when it would not fit: the heads
    build it from three temporaries of that size. Monte-Carlo factors are
    (mc_samples, n_samples, n_outputs) and the matrix-free Fisher never forms it."""
    n, k = z.shape
    if k > 1:
        check_memory(
            (n, k, k),
            z.dtype.itemsize,
            f"the exact Fisher's output curvature for {n} samples and {k} outputs",
            "fisher='mc' (mc_samples factors instead of one per output), solver='cg' "
            "(matrix-free), or a smaller batch_size",
            copies=3,
        )


class CurvatureOperator:
    """A symmetric positive semi-definite curvature matrix of shape (n_params, n_params).

    Behaves as a linear operator: ``C @ v`` (v of shape (n_params,) or (n_params, k)),
    :meth:`to_dense`, :meth:`aslinearoperator` (for scipy's ``cg``, ``eigsh``…), and
    :meth:`solve` for the damped inverse. Subclasses implement ``_matvec``, ``_solve`` and
    ``_to_dense``; validation and the damping contract live here, once (the template-method
    layout of kfac-jax's ``CurvatureBlock``).

    Attributes
    ----------
    status : str
        "ok", or how the last solve recovered from a singular matrix ("jitter", "pinv"),
        or "max_cg_iter" when CG stopped at its cap.
    """

    def __init__(self, objective, reduction="mean"):
        self.objective = objective
        if isinstance(reduction, str) and reduction == "mean":
            self.reduction = Reduction.MEAN  # the default, without the enum lookup
        else:
            self.reduction = check_choice(reduction, "reduction", Reduction)
        self.n_params = objective.n_params
        self.shape = (self.n_params, self.n_params)
        self.dtype = objective.model.dtype
        self.status = "ok"
        # every term of the mean curvature is multiplied by ``scale`` for reduction="sum"
        self.scale = float(objective.n_samples) if self.reduction is Reduction.SUM else 1.0
        self.l2 = self.scale * objective.l2

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_params={self.n_params}, reduction={self.reduction.value!r})"
        )

    def _check_vector(self, v, name="v") -> Array:
        if (
            type(v) is np.ndarray
            and v.dtype == self.dtype
            and v.shape == (self.n_params,)
            and np.isfinite(v).all()
        ):
            return v  # the common case, an optimizer's own gradient: nothing to convert
        v = check_finite_array(v, name)
        if v.ndim not in (1, 2) or v.shape[0] != self.n_params:
            raise ValueError(
                f"Shape mismatch: expected {name} of shape ({self.n_params},) or "
                f"({self.n_params}, k), got {v.shape}."
            )
        return v.astype(self.dtype, copy=False)

    def __matmul__(self, v):
        v = self._check_vector(v)
        if v.ndim == 1:
            return self._matvec(v)
        return np.column_stack([self._matvec(col) for col in v.T])

    def matvec(self, v) -> Array:
        return self @ v

    def to_dense(self) -> Array:
        """The full (n_params, n_params) matrix, undamped."""
        return self._to_dense()

    def solve(self, v, damping: float = 0.0) -> Array:
        """``(C + damping · I)⁻¹ v`` for v of shape (n_params,) or (n_params, k)."""
        damping = check_nonnegative(damping, "damping")
        v = self._check_vector(v)
        self.status = "ok"
        return self._solve(v, damping)

    def aslinearoperator(self, damping: float = 0.0) -> LinearOperator:
        """``C + damping · I`` as a ``scipy.sparse.linalg.LinearOperator``."""
        damping = check_nonnegative(damping, "damping")
        return LinearOperator(
            self.shape,
            matvec=lambda v: self._matvec(np.ravel(v)) + damping * np.ravel(v),
            dtype=self.dtype,
        )

    def _penalty_diag(self) -> Array:
        return self.l2 * self.objective.weight_mask

    def _matvec(self, v: Array) -> Array:
        raise NotImplementedError

    def _to_dense(self) -> Array:
        return self @ np.eye(self.n_params, dtype=self.dtype)

    def _solve(self, v: Array, damping: float) -> Array:
        raise NotImplementedError


def layer_statistics(
    objective,
    theta: Array,
    fisher_type,
    mc_samples: int = 1,
    random_state: Seed = None,
    n_statistics: int | None = None,
) -> tuple[list[Array], list[Array]]:
    """Per-layer inputs ``ā_l`` (n_rows, rows_l) and back-propagated factors ``g_l``
    (n_factors, n_rows, fan_out_l): everything the diagonal and K-FAC curvatures need.

    n_rows is the batch size, or ``n_statistics`` when it is smaller: the statistics are then
    those of ``n_statistics`` rows drawn without replacement (seeded by ``random_state``,
    which then also seeds the Monte-Carlo labels) — the sub-sampled curvature of K-FAC
    implementations, which cuts the output columns' backward pass and the factors' syrks
    by the fraction ``n_statistics / n_samples``. The forward pass is the batch's own
    (cached), sliced, never recomputed. ``n_backprop`` still counts one per column."""
    cache = objective.forward(theta)
    Y = objective.Y
    rng = random_state
    if n_statistics is not None:
        n_statistics = check_positive_int(n_statistics, "n_statistics")
    if n_statistics is not None and n_statistics < objective.n_samples:
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(objective.n_samples, n_statistics, replace=False))
        cache = type(cache)(
            [a[rows] for a in cache.inputs], [s[rows] for s in cache.slopes], cache.outputs[rows]
        )
        Y = Y[rows]
    U = _output_factors_at(objective.model.head, cache.outputs, Y, fisher_type, mc_samples, rng)
    return cache.inputs, backpropagate_factors(objective, theta, cache, U)


def backpropagate_factors(objective, theta: Array, cache, U: Array) -> list[Array]:
    """``model.backward`` of the output factors U (n_factors, n_samples, n_outputs), counted:
    each of the ``n_factors`` columns pulled back over the batch is one ``n_backprop``."""
    objective.counts.n_backprop += U.shape[0]
    return objective.model.backward(theta, cache, U)
