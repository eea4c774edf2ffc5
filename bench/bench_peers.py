"""time_ benchmarks: our side of every row of ``natgrad peers`` (the peers stay there).

Each row's work is built by ``natgrad_core.benchmarking.peers.ours_workloads``, the same
definition the peers table times, so the two cannot drift apart: loss and gradient
(logistic, MLP), the exact, CG and L-BFGS fits of logistic regression, the K-FAC update,
one Fisher-vector product and one exact natural-gradient step of the digits MLP, and the
K-FAC fit to ``MLPClassifier``'s loss. None of it needs PyTorch or curvlinops. Sizes are
the issue's, or ``natgrad peers --quick``'s with ``NATGRAD_ASV_QUICK=1`` (``common.QUICK``).
"""

from __future__ import annotations

import numpy as np

from . import common

ROWS = tuple(common.ours_workloads(common.QUICK)) if common.ours_workloads else ("none",)


class Peers:
    """``workload.run()`` of one row: ``setup`` loads the data (and, for the MLP fit, fits
    the ``MLPClassifier`` whose loss is the stopping target) outside the clock."""

    params = (ROWS,)
    param_names = ("row",)
    repeat = (1, 5, 30.0)
    timeout = 300

    def setup(self, row):
        common.require("ours_workloads")
        builders = common.ours_workloads(common.QUICK)
        if row not in builders:
            raise NotImplementedError(f"no peers row {row!r} at this commit")
        self.workload = builders[row]()

    def time_ours(self, row):
        with np.errstate(all="ignore"):
            self.workload.run()
