"""Imports every study module, so that each registers itself (one line per study)."""

from . import kfac_autoencoder  # noqa: F401, I001
from . import trpo_kl  # noqa: F401
