"""Refuse an allocation that cannot fit before making it.

Dense curvature grows as the square of the parameters or of the samples: an MLP with 1,500
hidden units on 20 features has a 9 GiB (n_params, n_params) Fisher, and 2,000 samples of a
1,000-class softmax a 15 GiB (n_samples, n_classes, n_classes) output curvature. Allocating
either would swap the machine or be killed by the OOM killer long after the run started;
:func:`check_memory` refuses it up front and says what to choose instead.
"""

from __future__ import annotations

import os

__all__ = ["MEMORY_FRACTION", "MemoryLimitError", "check_memory", "memory_limit"]

# Largest share of physical memory one dense curvature array may take: the rest is left to
# its temporaries (a copy for the factorization), the data and the other processes.
MEMORY_FRACTION = 0.5


class MemoryLimitError(ValueError, MemoryError):
    """An array would need more than :func:`memory_limit` bytes; nothing was allocated.

    A ``ValueError`` (the configuration does not fit this machine) and a ``MemoryError``
    (what it would have become)."""


def memory_limit() -> int:
    """Bytes one dense curvature array may take: ``MEMORY_FRACTION`` of physical memory."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): no guard
        return 2**63
    return int(MEMORY_FRACTION * physical)


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps the number >= 1 (e.g. "9.7 GiB")."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} TiB"


def check_memory(
    shape: tuple[int, ...], itemsize: int, what: str, instead: str, copies: int = 1
) -> None:
    """Raise :class:`MemoryLimitError` if ``copies`` arrays of ``shape`` (alive at once)
    would exceed :func:`memory_limit` bytes.

    ``what`` names the array ("the exact Fisher in parameter space"), ``instead`` the
    choices that avoid it ("solver='cg' or 'kfac'").
    """
    n_bytes = copies * itemsize
    for size in shape:
        n_bytes *= int(size)
    limit = memory_limit()
    if n_bytes > limit:
        dims = " x ".join(str(int(s)) for s in shape)
        arrays = "an array" if copies == 1 else f"{copies} arrays"
        raise MemoryLimitError(
            f"{what} needs {arrays} of shape {dims} ({format_bytes(n_bytes)}), more than "
            f"the {format_bytes(limit)} allowed ({MEMORY_FRACTION:g} of physical memory); "
            f"nothing was allocated. Choose {instead}."
        )
