"""natgrad: natural-gradient optimization — exact, diagonal, K-FAC and CG — with baselines.

The public surface, grouped as in curvlinops' ``__init__``; everything else is internal.
"""

from ._validation import CGMaxIterWarning, DivergenceWarning, SingularCurvatureWarning
from .curvature import (
    EKFAC,
    KFAC,
    CurvatureOperator,
    DenseFisher,
    DiagonalFisher,
    FisherType,
    ImplicitFisher,
    conjugate_gradient,
)
from .models import MLP, LogisticModel, Objective, OracleCounts
from .optim import (
    LBFGS,
    SOLVERS,
    Adam,
    GradientDescent,
    Momentum,
    NaturalGradient,
    Result,
    make_optimizer,
    minimize,
)
from .sklearn import NaturalGradientClassifier

__version__ = "0.1.0"

__all__ = [
    # models and objective
    "MLP",
    "LogisticModel",
    "Objective",
    "OracleCounts",
    # curvature
    "EKFAC",
    "KFAC",
    "CurvatureOperator",
    "DenseFisher",
    "DiagonalFisher",
    "FisherType",
    "ImplicitFisher",
    "conjugate_gradient",
    # optimizers and driver
    "LBFGS",
    "SOLVERS",
    "Adam",
    "GradientDescent",
    "Momentum",
    "NaturalGradient",
    "Result",
    "make_optimizer",
    "minimize",
    # estimator
    "NaturalGradientClassifier",
    # warnings
    "CGMaxIterWarning",
    "DivergenceWarning",
    "SingularCurvatureWarning",
]
