"""Dense linear algebra shared by the curvature representations."""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, cho_factor, cho_solve, eigh, lapack

from .._typing import Array
from .._validation import warn_singular

# Reciprocal condition numbers below this many machine epsilons (times the size) are
# treated as singular.
_RCOND_FLOOR_EPS = 10.0
_JITTERS = (1e-10, 1e-8, 1e-6)


def syrk_t(a: Array, out: Array | None = None, alpha: float = 1.0) -> Array:
    """``out + alpha · aᵀ a`` via BLAS syrk (half the flops of a GEMM); returns a full matrix."""
    fn = blas.get_blas_funcs("syrk", (a,))
    a = np.asfortranarray(a)
    if out is None:
        c = fn(alpha, a, trans=1)
    else:
        c = fn(alpha, a, beta=1.0, c=np.asfortranarray(out), trans=1, overwrite_c=1)
    return np.triu(c) + np.triu(c, 1).T


class SymmetricSolver:
    """Factor a symmetric PSD matrix once; solve many right-hand sides.

    Cholesky first (``cho_factor``); if it fails or LAPACK's ``pocon`` reports a reciprocal
    condition number below ``10 · n · eps``, a :class:`SingularCurvatureWarning` is issued
    and the matrix is regularized with a jitter ``δ · mean(diag)`` for δ in 1e-10, 1e-8, 1e-6;
    if that also fails, a pseudo-inverse from ``eigh`` is used. ``status`` records which.
    """

    def __init__(self, A: Array, counts=None, what: str = "curvature"):
        if counts is not None:
            counts.n_factorizations += 1
        self.status = "ok"
        self._chol = self._try_cholesky(A)
        if self._chol is not None:
            return
        scale = max(float(np.mean(np.diag(A))), np.finfo(A.dtype).tiny)
        for jitter in _JITTERS:
            jittered = A + jitter * scale * np.eye(A.shape[0], dtype=A.dtype)
            self._chol = self._try_cholesky(jittered, floor_eps=1.0)
            if self._chol is not None:
                self.status = "jitter"
                warn_singular(
                    f"{what} matrix is singular or ill-conditioned; added jitter "
                    f"{jitter:g}·mean(diag) and recorded status 'jitter'."
                )
                return
        w, Q = eigh(A)
        cutoff = max(w.max(), 0.0) * A.shape[0] * np.finfo(A.dtype).eps
        inv_w = np.where(w > cutoff, 1.0 / np.where(w > cutoff, w, 1.0), 0.0)
        self._pinv = (Q, inv_w)
        self.status = "pinv"
        warn_singular(f"{what} matrix is singular; used a pseudo-inverse, status 'pinv'.")

    @staticmethod
    def _try_cholesky(A, floor_eps=_RCOND_FLOOR_EPS):
        try:
            c, lower = cho_factor(A, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(c)):
            return None
        pocon = lapack.get_lapack_funcs("pocon", (c,))
        rcond, info = pocon(c, np.abs(A).sum(axis=0).max(), uplo="U")
        if info != 0 or rcond < floor_eps * np.finfo(A.dtype).eps * A.shape[0]:
            return None
        return c, lower

    def solve(self, b: Array) -> Array:
        if self._chol is not None:
            return cho_solve(self._chol, b, check_finite=False)
        Q, inv_w = self._pinv
        qb = Q.T @ b
        return Q @ (inv_w.reshape((-1,) + (1,) * (qb.ndim - 1)) * qb)
