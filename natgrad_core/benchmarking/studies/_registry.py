"""Imports every study module, so that each registers itself (one line per study)."""

from . import empirical_fisher  # noqa: F401
