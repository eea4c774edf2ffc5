"""Dense linear algebra shared by the curvature representations, and its flop counts.

Flops (``OracleCounts.n_flops``) are counted here, where the work happens, with the
textbook leading terms (Golub & Van Loan, *Matrix Computations*, 4th ed. 2013):

* syrk ``aᵀa`` for a of shape (m, n): ``m · n · (n + 1)`` (n(n+1)/2 entries, 2m each);
* Cholesky of an n×n matrix: ``n³/3`` (Algorithm 4.2.1); applying it to one right-hand
  side (two triangular solves): ``2 n²``;
* symmetric eigendecomposition with eigenvectors: ``9 n³`` (symmetric QR, §8.3.3: about
  4n³/3 for the eigenvalues alone, 9n³ with the eigenvector matrix);
* a general product of (m, k) by (k, n): ``2 m k n``.

Lower-order work (the condition estimate of ``pocon``, elementwise scalings) is left out.

Thresholds scale with the working precision ``eps`` of the matrix's dtype: a Cholesky
factor whose reciprocal condition number is below ``eps`` is singular to working
precision — LAPACK's own convention (``xPOSVX`` returns ``info = n + 1`` when
``rcond < eps``). An eigenvalue of a factor of dimension n is zero to working precision
when it is below ``n · eps · max eigenvalue`` (the tolerance of ``numpy.linalg.matrix_rank``).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.linalg import blas, eigh, lapack

from .._typing import Array
from .._validation import warn_singular

# Jitters δ · mean(diag) tried in turn: δ = eps^p gives up the fraction 1 - p of the
# working digits, the same fraction in every precision (float64: ≈ 1.6e-10, 1.5e-8, 1.3e-6;
# float32: ≈ 4.8e-5, 3.5e-4, 2.5e-3).
_JITTER_EXPONENTS = (5 / 8, 1 / 2, 3 / 8)
EIGH_FLOPS_PER_N3 = 9
"""Flops of a symmetric eigendecomposition with eigenvectors, per n³ (Golub & Van Loan §8.3)."""


def add_flops(counts, flops) -> None:
    """Add ``flops`` to ``counts.n_flops`` (no-op when ``counts`` is None)."""
    if counts is not None:
        counts.n_flops += int(flops)


def jitters(dtype) -> tuple[float, ...]:
    """Relative jitters δ tried by :class:`SymmetricSolver` for ``dtype`` (see above)."""
    eps = float(np.finfo(dtype).eps)
    return tuple(eps**p for p in _JITTER_EXPONENTS)


def eigh_counted(A: Array, counts=None):
    """``scipy.linalg.eigh(A)``, counting one factorization and ``9 n³`` flops."""
    if counts is not None:
        counts.n_factorizations += 1
    add_flops(counts, EIGH_FLOPS_PER_N3 * A.shape[0] ** 3)
    # divide and conquer (LAPACK xSYEVD): the fastest driver with eigenvectors at K-FAC sizes;
    # scipy < 1.13 gives xSYEVD a workspace too small for a 1 x 1 matrix (a binary head's
    # K-FAC output factor), where the plain driver costs nothing anyway
    return eigh(A, driver="evd" if A.shape[0] > 1 else "ev", check_finite=False)


@functools.cache
def _lapack(names: tuple[str, ...], dtype: np.dtype):
    """LAPACK routines ``names`` for ``dtype``, looked up once (the lookup costs about as
    much as a Cholesky of a 30 x 30 matrix)."""
    return lapack.get_lapack_funcs(names, dtype=dtype)


def add_to_diagonal(A: Array, v) -> Array:
    """``A[i, i] += v[i]`` (or a scalar ``v``) in place, for a square C- or F-ordered ``A``
    (its diagonal is every (n + 1)-th element in either order); returns ``A``."""
    n = A.shape[0]
    if A.flags.f_contiguous or A.flags.c_contiguous:
        flat = A.reshape(-1, order="F" if A.flags.f_contiguous else "C")  # a view
        flat[:: n + 1] += v
    else:
        A[np.diag_indices(n)] += v
    return A


def syrk_t(
    a: Array,
    out: Array | None = None,
    alpha: float = 1.0,
    counts=None,
    symmetrize: bool = True,
) -> Array:
    """``out + alpha · aᵀ a`` via BLAS syrk (half the flops of a GEMM), without copying ``a``.

    Without ``out``, numpy's ``aᵀ @ a`` runs: numpy recognizes a product of an array with
    its own transpose and calls syrk on whichever layout ``a`` has, then fills the lower
    triangle (for a C-ordered tall a it is ~30% faster than scipy's syrk on the transposed
    view, which is the next option). With ``out`` (F-ordered, shape (n, n)), scipy's syrk
    updates its upper triangle in place, reading an F-ordered a as is (``trans=1``) and a
    C-ordered a of shape (m, n) as its F-ordered transpose (``trans=0``:
    ``(aᵀ)(aᵀ)ᵀ = aᵀa``); only an array that is neither is copied. With
    ``symmetrize=False`` the lower triangle of ``out`` is left as it was, which lets a
    caller accumulate several syrks and call :func:`symmetrize_upper` once at the end.

    Adds ``m · n · (n + 1)`` flops to ``counts`` for a of shape (m, n)."""
    m, n = a.shape
    add_flops(counts, m * n * (n + 1))
    if out is None:
        c = a.T @ a
        if alpha != 1.0:
            c *= alpha
        return c
    fn = blas.get_blas_funcs("syrk", (a,))
    if a.flags.f_contiguous:
        mat, trans = a, 1
    elif a.flags.c_contiguous:
        mat, trans = a.T, 0
    else:
        mat, trans = np.asfortranarray(a), 1
    if out.shape != (n, n) or not out.flags.f_contiguous or out.dtype != a.dtype:
        raise ValueError(
            f"Shape mismatch: expected out as an F-ordered {a.dtype} array of shape "
            f"({n}, {n}), got a {'F' if out.flags.f_contiguous else 'C'}-ordered "
            f"{out.dtype} array of shape {out.shape}."
        )
    c = fn(alpha, mat, beta=1.0, c=out, trans=trans, overwrite_c=1)
    return symmetrize_upper(c) if symmetrize else c


_SYMMETRIZE_BLOCK = 64  # a cache-sized diagonal block: its temporaries stay small


@functools.cache
def _strict_lower(m: int) -> Array:
    """The strictly lower triangle of an m×m matrix as a boolean mask (read-only)."""
    mask = np.tri(m, k=-1, dtype=bool)
    mask.flags.writeable = False
    return mask


def symmetrize_upper(c: Array) -> Array:
    """Copy the upper triangle of the square array ``c`` onto its lower triangle, in place,
    a block of columns at a time (no temporary of the full size); returns ``c``."""
    n = c.shape[0]
    for j0 in range(0, n, _SYMMETRIZE_BLOCK):
        j1 = min(n, j0 + _SYMMETRIZE_BLOCK)
        diag = c[j0:j1, j0:j1]
        # numpy copies the overlapping source first
        np.copyto(diag, diag.T, where=_strict_lower(j1 - j0))
        c[j1:, j0:j1] = c[j0:j1, j1:].T
    return c


class SymmetricSolver:
    """Factor a symmetric PSD matrix once; solve many right-hand sides.

    Cholesky first (LAPACK ``potrf``); if it fails or LAPACK's ``pocon`` reports a reciprocal
    condition number below ``eps`` of the dtype (singular to working precision, see the
    module doc), a :class:`SingularCurvatureWarning` is issued and the matrix is regularized
    with a jitter ``δ · mean(diag)`` for δ in :func:`jitters` (float64: 1.6e-10, 1.5e-8,
    1.3e-6); if that also fails, a pseudo-inverse from ``eigh`` is used. ``status`` records
    which. Every Cholesky attempt adds ``n³/3`` flops to ``counts``, the pseudo-inverse
    ``9 n³``, and each solved right-hand side ``2 n²`` (``4 n²`` for the pseudo-inverse).
    """

    def __init__(self, A: Array, counts=None, what: str = "curvature"):
        if counts is not None:
            counts.n_factorizations += 1
        self._counts = counts
        self.status = "ok"
        self._chol = self._try_cholesky(A)
        if self._chol is not None:
            return
        scale = max(float(np.mean(np.diag(A))), np.finfo(A.dtype).tiny)
        for jitter in jitters(A.dtype):
            jittered = A + jitter * scale * np.eye(A.shape[0], dtype=A.dtype)
            self._chol = self._try_cholesky(jittered)
            if self._chol is not None:
                self.status = "jitter"
                warn_singular(
                    f"{what} matrix is singular or ill-conditioned; added jitter "
                    f"{jitter:g}·mean(diag) and recorded status 'jitter'."
                )
                return
        w, Q = eigh(A)
        add_flops(counts, EIGH_FLOPS_PER_N3 * A.shape[0] ** 3)
        cutoff = max(w.max(), 0.0) * A.shape[0] * np.finfo(A.dtype).eps
        inv_w = np.where(w > cutoff, 1.0 / np.where(w > cutoff, w, 1.0), 0.0)
        self._pinv = (Q, inv_w)
        self.status = "pinv"
        warn_singular(f"{what} matrix is singular; used a pseudo-inverse, status 'pinv'.")

    def _try_cholesky(self, A):
        add_flops(self._counts, A.shape[0] ** 3 // 3)
        potrf, pocon = _lapack(("potrf", "pocon"), A.dtype)
        c, info = potrf(A, lower=0, clean=0)  # the upper factor; the lower triangle is A's
        if info != 0 or not np.isfinite(c).all():
            return None
        rcond, info = pocon(c, np.abs(A).sum(axis=0).max(), uplo="U")
        if info != 0 or rcond < np.finfo(A.dtype).eps:
            return None
        return c

    def solve(self, b: Array) -> Array:
        n = b.shape[0]
        n_rhs = 1 if b.ndim == 1 else b.shape[1]
        add_flops(self._counts, (2 if self._chol is not None else 4) * n * n * n_rhs)
        if self._chol is not None:
            (potrs,) = _lapack(("potrs",), self._chol.dtype)
            x, info = potrs(self._chol, b, lower=0)
            if info != 0:  # only for an illegal argument: a bug, not a numerical state
                raise RuntimeError(f"LAPACK potrs failed with info = {info}.")
            return x
        Q, inv_w = self._pinv
        qb = Q.T @ b
        return Q @ (inv_w.reshape((-1,) + (1,) * (qb.ndim - 1)) * qb)
