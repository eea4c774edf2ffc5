"""Input checks done once, at the boundary; they raise before any work starts."""

from __future__ import annotations

import numbers
import warnings
from enum import Enum

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "CGMaxIterWarning",
    "DivergenceWarning",
    "SingularCurvatureWarning",
    "check_choice",
    "check_finite_array",
    "check_nonnegative",
    "check_positive",
]


class SingularCurvatureWarning(UserWarning):
    """The curvature matrix was (numerically) singular; a fallback was used and recorded."""


class CGMaxIterWarning(ConvergenceWarning):
    """Conjugate gradients stopped at its iteration cap before its tolerance; the inexact
    solution was used and the step recorded status "max_cg_iter". The curvature need not be
    singular: the cap was too low for its conditioning. (A scikit-learn ConvergenceWarning.)"""


class DivergenceWarning(ConvergenceWarning):
    """A run diverged (non-finite or exploding loss) and ended with status "diverged".
    (A scikit-learn ConvergenceWarning.)"""


def check_finite_array(x, name: str, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Return ``x`` as a real array, raising ``ValueError`` for a wrong rank, a dtype that is
    not real numbers (complex, strings, objects: casting would drop the imaginary part or
    fail later), or NaN/inf.

    ``dtype`` (optional) is the dtype to convert to, after the checks: a complex ``x`` is
    rejected even when ``dtype`` is real.
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be array-like of numbers, got {type(x).__name__}.") from exc
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{name} must hold real numbers, got an object array that does not convert "
                f"to float ({exc})."
            ) from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got an array of shape {arr.shape}.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); expected finite.")
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _check_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return value


def check_nonnegative(value, name: str) -> float:
    value = _check_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
    return value


def check_positive(value, name: str) -> float:
    value = _check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return value


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r}).")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}.")
    return int(value)


def check_choice(value, name: str, choices):
    """Return ``value`` if it is one of ``choices`` (an Enum class or an iterable of str)."""
    if isinstance(choices, type) and issubclass(choices, Enum):
        try:
            return choices(value)
        except ValueError:
            allowed = [c.value for c in choices]
            raise ValueError(f"Unknown {name} {value!r}; expected one of {allowed}.") from None
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {choices}.")
    return value


def warn_singular(message: str) -> None:
    warnings.warn(message, SingularCurvatureWarning, stacklevel=3)
