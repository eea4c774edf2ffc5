"""The tiny grid every harness test runs: 2 problems x 2 solvers x seeds, a few iterations."""

from __future__ import annotations

import json

TINY_PROBLEMS = ("iris-logistic", "iris-mlp")
TINY_SOLVERS = ("gd-armijo", "kfac-quadratic")
TINY_SEEDS = (0, 1)

TINY_TEMPLATE = """\
[run]
problems = {problems}
seeds = {seeds}
max_iter = {max_iter}
time_limit = 30
fidelity = true

[[solver]]
label = "gd-armijo"
solver = "gd"
step = "armijo"

[[solver]]
label = "kfac-quadratic"
solver = "kfac"
step = "quadratic"
"""


def tiny_toml(seeds=TINY_SEEDS, max_iter: int = 8, problems=TINY_PROBLEMS) -> str:
    """The TOML text of the tiny grid."""
    return TINY_TEMPLATE.format(
        seeds=json.dumps(list(seeds)), max_iter=max_iter, problems=json.dumps(list(problems))
    )


TINY_TOML = tiny_toml()
