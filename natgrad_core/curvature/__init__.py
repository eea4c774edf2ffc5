"""Curvature representations: every one a linear operator with ``solve(v, damping)``."""

from .base import (
    CurvatureOperator,
    FisherType,
    Reduction,
    layer_statistics,
    output_factors,
    parse_fisher_type,
)
from .dense import DenseFisher, class_block_fisher, softmax_class_block_fisher
from .diagonal import DiagonalFisher
from .gaussian import gaussian_logistic_fisher
from .implicit import CGResult, ImplicitFisher, conjugate_gradient
from .kfac import EKFAC, KFAC, KFACDamping, KFACFactors, factors_from_statistics, kfac_factors

__all__ = [
    # operators
    "EKFAC",
    "KFAC",
    "CurvatureOperator",
    "DenseFisher",
    "DiagonalFisher",
    "ImplicitFisher",
    # Fisher variants and conventions
    "FisherType",
    "KFACDamping",
    "KFACFactors",
    "Reduction",
    "parse_fisher_type",
    # building blocks
    "CGResult",
    "class_block_fisher",
    "softmax_class_block_fisher",
    "conjugate_gradient",
    "factors_from_statistics",
    "gaussian_logistic_fisher",
    "kfac_factors",
    "layer_statistics",
    "output_factors",
]
