"""A seeded stream of examples from a known model: the well-specified setting of online
learning theory, where the data are drawn from the model itself at a true ``θ*``.

    xₙ ~ N(0, I_{n_features}),      yₙ ~ p(y | xₙ, θ*)      (the model's own head)

Amari (1998, "Natural gradient works efficiently in learning", §4) proves online natural
gradient Fisher-efficient in exactly this setting; a study of that claim needs many
independent streams, each reproducible from its seed, drawn as one array per block of steps.
"""

from __future__ import annotations

import numpy as np

from .._typing import Array, Seed
from .._validation import check_finite_array
from .mlp import MLP

__all__ = ["ModelStream"]


class ModelStream:
    """Examples ``(x, y)`` with standard normal inputs and labels drawn from ``model`` at
    ``theta`` (its head's ``sample``).

    Parameters
    ----------
    model : MLP or LogisticModel
    theta : array of shape (n_params,)
        The true parameters ``θ*``.
    random_state : int, SeedSequence or None
        Seeds the stream: the same seed and the same sequence of :meth:`draw` shapes give
        the same examples.
    """

    def __init__(self, model: MLP, theta, random_state: Seed = None):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be an MLP or LogisticModel, got {type(model).__name__}.")
        theta = check_finite_array(theta, "theta", ndim=1, dtype=model.dtype)
        model.unpack(theta)  # raises on a shape mismatch
        self.model, self.theta = model, theta
        self._rng = np.random.default_rng(random_state)

    def draw(self, shape) -> tuple[Array, Array]:
        """The next examples: ``X`` of shape (*shape, n_features) and encoded targets ``Y``
        of shape (*shape, n_outputs) (the head's encoding, 0/1 for a sigmoid head).

        ``shape`` is an int or a tuple, e.g. (n_steps, n_runs) for a block of steps of
        independent runs. The inputs are drawn first, then the labels, from one generator.
        """
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in shape):
            raise ValueError(f"shape must hold integers >= 0, got {shape!r}.")
        model = self.model
        n = int(np.prod(shape, dtype=np.int64))
        X = self._rng.standard_normal((n, model.n_features)).astype(model.dtype, copy=False)
        z = model.forward(self.theta, X).outputs
        Y = model.head.sample(z, self._rng, 1)[0]
        return X.reshape(*shape, model.n_features), Y.reshape(*shape, model.n_outputs)
