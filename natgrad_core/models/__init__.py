"""Models, output distributions and the training objective."""

from .losses import Bernoulli, Categorical, Gaussian, OutputDistribution, get_head
from .mlp import MLP, ForwardCache, LogisticModel
from .objective import Objective, OracleCounts
from .streams import ModelStream

__all__ = [
    "MLP",
    "Bernoulli",
    "Categorical",
    "ForwardCache",
    "Gaussian",
    "LogisticModel",
    "ModelStream",
    "Objective",
    "OracleCounts",
    "OutputDistribution",
    "get_head",
]
