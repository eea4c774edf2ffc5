"""Multilayer perceptrons on a flat float parameter vector; logistic regression is the case
with no hidden layer.

Parameter layout
----------------
Layer ``l`` maps ``ā_l`` (its input with a constant 1 appended when ``fit_intercept``) to
pre-activations ``z_l = ā_l W̄_l`` with ``W̄_l`` of shape ``(fan_in + 1, fan_out)``: the
weights stacked over the bias row, as in scikit-learn's ``coefs_`` / ``intercepts_``. The
flat vector ``theta`` concatenates every ``W̄_l`` in row-major order. With this layout one
example's gradient for layer ``l`` is ``vec(ā gᵀ) = ā ⊗ g`` (``g = ∂nll/∂z_l``), so a layer's
Fisher block is ``E[(ā ⊗ g)(ā ⊗ g)ᵀ]`` and K-FAC's approximation is ``A ⊗ G`` exactly as
written in Martens & Grosse (2015), eq. (1).

All methods are vectorized over samples: no Python loop runs over samples or classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._typing import Array, Seed
from .._validation import check_choice, check_finite_array
from .losses import OutputDistribution, get_head

__all__ = ["ACTIVATIONS", "MLP", "ForwardCache", "LogisticModel", "PassFlops"]


def _tanh(z):
    a = np.tanh(z)
    return a, 1.0 - a * a


def _relu(z):
    return np.maximum(z, 0.0), (z > 0).astype(z.dtype)


def _sigmoid(z):
    a = 0.5 * (1.0 + np.tanh(0.5 * z))
    return a, a * (1.0 - a)


def _identity(z):
    return z, np.ones_like(z)


_ACTIVATIONS = {
    "tanh": _tanh,
    "relu": _relu,
    "sigmoid": _sigmoid,
    "logistic": _sigmoid,
    "identity": _identity,
}
ACTIVATIONS = tuple(_ACTIVATIONS)
"""Names of the hidden-layer activations."""


class ForwardCache(NamedTuple):
    """What one forward pass keeps for the backward and forward-mode passes.

    inputs : list of arrays of shape (n_samples, fan_in [+ 1])  — ``ā_l`` for each layer.
    slopes : list of arrays of shape (n_samples, fan_out)       — ``φ'(z_l)``, hidden layers.
    outputs : array of shape (n_samples, n_outputs)             — network outputs ``z``.
    """

    inputs: list
    slopes: list
    outputs: Array


class PassFlops(NamedTuple):
    """Flops of one gradient evaluation (:meth:`MLP.pass_flops`).

    forward : the forward pass;  backward : the backward pass (weight gradients and
    propagation);  propagation : the part of ``backward`` that carries one output column
    back through the hidden layers (what a curvature pays per ``n_backprop``).
    """

    forward: int
    backward: int
    propagation: int

    @property
    def gradient(self) -> int:
        """forward + backward: the flops of one loss-and-gradient evaluation."""
        return self.forward + self.backward


@dataclass(frozen=True)
class LayerShape:
    fan_in: int
    fan_out: int
    bias: bool
    offset: int

    @property
    def rows(self) -> int:
        return self.fan_in + int(self.bias)

    @property
    def size(self) -> int:
        return self.rows * self.fan_out


class MLP:
    """A fully connected network ``n_features → hidden_layer_sizes… → n_outputs``.

    Parameters
    ----------
    n_features : int
    n_targets : int
        Number of classes (softmax / sigmoid heads) or of target columns (Gaussian head).
        A sigmoid head with ``n_targets=2`` has a single output logit.
    hidden_layer_sizes : sequence of int, default ()
    activation : {"tanh", "relu", "sigmoid" (alias "logistic"), "identity"}
    head : {"softmax", "sigmoid", "gaussian"} or OutputDistribution
    fit_intercept : bool, default True
        Append a bias row to every layer.
    dtype : numpy float dtype, default float64
    """

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        hidden_layer_sizes=(),
        activation: str = "tanh",
        head: str | OutputDistribution = "softmax",
        fit_intercept: bool = True,
        dtype=np.float64,
    ):
        for name, value in (("n_features", n_features), ("n_targets", n_targets)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        sizes = tuple(hidden_layer_sizes)
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers, got {hidden_layer_sizes!r}."
            )
        check_choice(activation, "activation", _ACTIVATIONS)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a floating dtype, got {self.dtype}.")
        self.head = get_head(head)
        if self.head.name == "softmax" and n_targets < 2:
            raise ValueError(f"softmax head needs n_targets >= 2, got {n_targets}.")
        self.n_features = int(n_features)
        self.n_targets = int(n_targets)
        self.n_outputs = self.head.n_outputs(self.n_targets)
        self.hidden_layer_sizes = tuple(int(h) for h in sizes)
        self.activation = activation
        self.fit_intercept = bool(fit_intercept)
        self._act = _ACTIVATIONS[activation]
        widths = (self.n_features,) + self.hidden_layer_sizes + (self.n_outputs,)
        layers, offset = [], 0
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layer = LayerShape(fan_in, fan_out, self.fit_intercept, offset)
            layers.append(layer)
            offset += layer.size
        self.layers: tuple[LayerShape, ...] = tuple(layers)
        self.n_params = offset

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_features={self.n_features}, n_targets={self.n_targets}, "
            f"hidden_layer_sizes={self.hidden_layer_sizes}, activation={self.activation!r}, "
            f"head={self.head!r}, fit_intercept={self.fit_intercept})"
        )

    # ----------------------------------------------------------------- parameters
    def unpack(self, theta: Array) -> list[Array]:
        """Views ``W̄_l`` of shape (fan_in [+ 1], fan_out) into the flat vector ``theta``."""
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(
                f"Shape mismatch: expected parameters of shape ({self.n_params},), "
                f"got {theta.shape}."
            )
        return [
            theta[lay.offset : lay.offset + lay.size].reshape(lay.rows, lay.fan_out)
            for lay in self.layers
        ]

    def pack(self, blocks) -> Array:
        """Inverse of :meth:`unpack`."""
        return np.concatenate([np.asarray(b, dtype=self.dtype).ravel() for b in blocks])

    def weight_mask(self) -> Array:
        """1 for weights, 0 for intercepts: where the L2 penalty applies."""
        blocks = []
        for lay in self.layers:
            m = np.ones((lay.rows, lay.fan_out), dtype=self.dtype)
            if lay.bias:
                m[-1] = 0.0
            blocks.append(m)
        return self.pack(blocks)

    def init_params(self, random_state: Seed = None) -> Array:
        """Glorot-uniform weights and zero intercepts (scikit-learn's MLP initialization)."""
        rng = np.random.default_rng(random_state)
        blocks = []
        for lay in self.layers:
            factor = 2.0 if self.activation in ("sigmoid", "logistic") else 6.0
            bound = np.sqrt(factor / (lay.fan_in + lay.fan_out))
            w = rng.uniform(-bound, bound, size=(lay.rows, lay.fan_out))
            if lay.bias:
                w[-1] = 0.0
            blocks.append(w)
        return self.pack(blocks)

    def pass_flops(self, n_samples: int) -> PassFlops:
        """Flops of the passes of one gradient evaluation on ``n_samples``.

        Counting the matrix products only (a multiply-add is 2 flops), for layer l with
        ``rows_l`` inputs (bias included) and ``fan_out_l`` outputs::

            forward     = Σ_l 2 N rows_l fan_out_l                  (ā_l W̄_l)
            propagation = Σ_{l≥2} 2 N fan_in_l fan_out_l            (g_l W_lᵀ, in backward)
            backward    = Σ_l 2 N rows_l fan_out_l + propagation    (ā_lᵀ g_l + propagation)

        so forward ≈ 2·N·P and backward ≈ 4·N·P for a deep network; logistic regression has
        nothing to propagate (propagation = 0, backward = forward). Activations and the
        output head cost O(N · width), a lower order that is left out.
        """
        n = int(n_samples)
        forward = sum(2 * n * lay.rows * lay.fan_out for lay in self.layers)
        propagation = sum(2 * n * lay.fan_in * lay.fan_out for lay in self.layers[1:])
        return PassFlops(forward, forward + propagation, propagation)

    # ----------------------------------------------------------------- passes
    def check_X(self, X) -> Array:
        X = check_finite_array(X, "X", ndim=2)
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"Shape mismatch: expected X with {self.n_features} features, "
                f"got {X.shape[1]} (X has shape {X.shape})."
            )
        return np.asarray(X, dtype=self.dtype)

    def _augment(self, a: Array) -> Array:
        if not self.fit_intercept:
            return a
        return np.hstack([a, np.ones((a.shape[0], 1), dtype=a.dtype)])

    def forward(self, theta: Array, X: Array) -> ForwardCache:
        """Network outputs and what the other passes need. X: (n_samples, n_features)."""
        Ws = self.unpack(theta)
        inputs, slopes = [], []
        a = X
        for i, W in enumerate(Ws):
            a_bar = self._augment(a)
            inputs.append(a_bar)
            z = a_bar @ W
            if i < len(Ws) - 1:
                a, slope = self._act(z)
                slopes.append(slope)
        return ForwardCache(inputs, slopes, z)

    def predict_outputs(self, theta: Array, X: Array) -> Array:
        """Network outputs z of shape (n_samples, n_outputs) for X of shape
        (n_samples, n_features), checked by :meth:`check_X`."""
        return self.forward(theta, self.check_X(X)).outputs

    def backward(self, theta: Array, cache: ForwardCache, U: Array) -> list[Array]:
        """Back-propagate output gradients to every layer's pre-activations.

        U : array of shape (n_outputs_dims..., n_samples, n_outputs), any leading batch
            dimensions (e.g. one per column of √Λ or per Monte-Carlo draw).
        Returns ``[g_l]``, each of shape (leading..., n_samples, fan_out_l).
        """
        Ws = self.unpack(theta)
        g = U
        grads = [g]
        for layer_idx in range(len(Ws) - 1, 0, -1):
            W = Ws[layer_idx][: self.layers[layer_idx].fan_in]
            g = (g @ W.T) * cache.slopes[layer_idx - 1]
            grads.append(g)
        return grads[::-1]

    def vjp(self, theta: Array, cache: ForwardCache, U: Array) -> Array:
        """Σₙ Jₙᵀ uₙ, where Jₙ = ∂zₙ/∂θ. U: (n_samples, n_outputs) → (n_params,)."""
        gs = self.backward(theta, cache, U)
        return np.concatenate([(a.T @ g).ravel() for a, g in zip(cache.inputs, gs)])

    def jvp(self, theta: Array, cache: ForwardCache, v: Array) -> Array:
        """Jₙ v for every sample (forward mode). v: (n_params,) → (n_samples, n_outputs)."""
        Ws = self.unpack(theta)
        Vs = self.unpack(v)
        dz = cache.inputs[0] @ Vs[0]
        for i in range(1, len(Ws)):
            da = cache.slopes[i - 1] * dz
            dz = cache.inputs[i] @ Vs[i] + da @ Ws[i][: self.layers[i].fan_in]
        return dz

    def per_example_grads(
        self, cache: ForwardCache, grads: list[Array], out: Array | None = None
    ) -> Array:
        """Per-example parameter gradients ``ā_l ⊗ g_l`` from :meth:`backward` output.

        Returns an array of shape (leading..., n_samples, n_params), written into ``out``
        (that shape, any strides) when given. Memory grows as n_samples × n_params: meant for
        the dense and empirical Fishers and for tests.
        """
        shape = grads[0].shape[:-1] + (self.n_params,)
        if out is None:
            out = np.empty(shape, dtype=np.result_type(*cache.inputs, *grads))
        for lay, a, g in zip(self.layers, cache.inputs, grads):
            block = out[..., lay.offset : lay.offset + lay.size].view()
            block.shape = shape[:-1] + (lay.rows, lay.fan_out)  # a view, never a copy
            np.multiply(a[..., :, None], g[..., None, :], out=block)
        return out

    def jacobian(self, theta: Array, X: Array) -> Array:
        """Per-example Jacobians ∂zₙ/∂θ, shape (n_samples, n_outputs, n_params)."""
        cache = self.forward(theta, X)
        k = self.n_outputs
        U = np.broadcast_to(np.eye(k, dtype=self.dtype)[:, None, :], (k, X.shape[0], k))
        pe = self.per_example_grads(cache, self.backward(theta, cache, U))
        return pe.transpose(1, 0, 2)


class LogisticModel(MLP):
    """Logistic regression: binary (one sigmoid logit) or multinomial (softmax over K classes).

    Parameters start at zero (as scikit-learn's ``LogisticRegression``).
    """

    def __init__(
        self, n_features: int, n_classes: int, fit_intercept: bool = True, dtype=np.float64
    ):
        if (
            isinstance(n_classes, bool)
            or not isinstance(n_classes, (int, np.integer))
            or n_classes < 2
        ):
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}.")
        head = "sigmoid" if n_classes == 2 else "softmax"
        super().__init__(n_features, n_classes, (), "identity", head, fit_intercept, dtype)

    def __repr__(self):
        return (
            f"LogisticModel(n_features={self.n_features}, n_classes={self.n_targets}, "
            f"fit_intercept={self.fit_intercept})"
        )

    def init_params(self, random_state: Seed = None) -> Array:
        return np.zeros(self.n_params, dtype=self.dtype)
