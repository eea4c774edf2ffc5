"""Thread pools of the BLAS and OpenMP libraries: limit them, and read what is in force.

A multi-threaded BLAS on a small, busy machine spins waiting for cores it does not get: on
a 2-core box shared with other work, one exact natural-gradient step on wine-mlp took
~200 ms with two OpenBLAS threads and ~8 ms with one. threadpoolctl changes the limits of
the libraries *loaded when it is called*; numpy and scipy ship separate OpenBLAS copies
(scipy's is loaded with ``scipy.linalg``) and scikit-learn brings an OpenMP runtime, so
limit after importing them — ``natgrad_core`` imports all three.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

from threadpoolctl import ThreadpoolController

from ._validation import check_positive_int

__all__ = ["check_threads", "limit_threads", "threads_in_force"]


_CONTROLLER: tuple[int, ThreadpoolController] | None = None


def _controller() -> ThreadpoolController:
    """threadpoolctl's handle on the loaded pools, found again only when a module was
    imported since the last call: finding them walks every loaded shared library (~20 ms,
    as long as a whole small fit), reading their limits through the handle is ~20 µs."""
    global _CONTROLLER
    n_modules = len(sys.modules)
    if _CONTROLLER is None or _CONTROLLER[0] != n_modules:
        _CONTROLLER = (n_modules, ThreadpoolController())
    return _CONTROLLER[1]


def check_threads(value, name: str = "blas_threads") -> int | None:
    """``value`` as a thread count: None (leave the pools as they are) or an int >= 1."""
    return None if value is None else check_positive_int(value, name)


def limit_threads(n_threads: int | None):
    """Limit every loaded BLAS and OpenMP pool to ``n_threads`` (None: change nothing).

    The limit holds from this call until the returned object's ``restore_original_limits``
    (or the end of its ``with`` block); keep the object alive for a process-wide limit.
    """
    n_threads = check_threads(n_threads)
    return nullcontext() if n_threads is None else _controller().limit(limits=n_threads)


def threads_in_force() -> int:
    """The largest ``num_threads`` over the loaded BLAS and OpenMP pools (0: none found)."""
    return max((pool["num_threads"] for pool in _controller().info()), default=0)
