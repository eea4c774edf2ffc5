"""Type aliases shared across natgrad (one place, as in kfac-jax's ``utils/types``)."""

from __future__ import annotations

from typing import Union

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.floating]
"""A floating-point numpy array."""

Scalar = Union[float, np.floating]
"""A real scalar."""

Seed = Union[int, None, np.random.SeedSequence]
"""Anything ``numpy.random.default_rng`` accepts as a seed."""
