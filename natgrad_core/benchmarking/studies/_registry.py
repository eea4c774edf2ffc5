"""Imports every study module, so that each registers itself (one line per study)."""

from . import trpo_kl  # noqa: F401
