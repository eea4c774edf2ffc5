"""Imports every study module, so that each registers itself (one line per study)."""

from . import (
    adam_diagonal,  # noqa: F401
    empirical_fisher,  # noqa: F401
    fisher_efficiency,  # noqa: F401
    invariance,  # noqa: F401
    kfac_autoencoder,  # noqa: F401
    plateaus,  # noqa: F401
    trpo_kl,  # noqa: F401
)
