"""BLAS/LAPACK on stacks of small matrices (one call per matrix), with the GIL released.

scipy's f2py wrappers (``scipy.linalg.blas`` / ``scipy.linalg.lapack``) hold the GIL for the
whole call, so threads cannot overlap thousands of 100×100 factorizations: two threads took as
long as one. scipy also publishes the raw Fortran routines as C function pointers (the
``scipy.linalg.cython_blas`` / ``cython_lapack`` capsules, the interface numba uses); ctypes
releases the GIL for the duration of each foreign call, so blocks of patches run on every core.

Every array is a C-ordered float64 stack (n, d, d) or (n, k, d). Fortran sees each C-ordered
matrix transposed, so the routines below, which name the *C-order lower* triangle, call
Fortran with ``uplo='U'``. Only that triangle is read or written; the other keeps whatever it
held.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack

_ptr = ctypes.c_void_p


def _routine(module: Any, name: str, n_args: int) -> Any:
    """The Fortran routine ``name`` as a ctypes function taking ``n_args`` pointers."""
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object,
                                                                 ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None, *([_ptr] * n_args))(address)


@dataclass(frozen=True)
class _Routines:
    syrk: Any
    trsm: Any
    potrf: Any
    trtri: Any


def _load() -> _Routines:
    return _Routines(syrk=_routine(_cython_blas, "dsyrk", 10),
                     trsm=_routine(_cython_blas, "dtrsm", 11),
                     potrf=_routine(_cython_lapack, "dpotrf", 5),
                     trtri=_routine(_cython_lapack, "dtrtri", 6))


_ROUTINES = _load()    # immutable: function pointers resolved once at import
_UPPER = ctypes.c_char(b"U")
_NO = ctypes.c_char(b"N")
_TRANS = ctypes.c_char(b"T")
_LEFT = ctypes.c_char(b"L")


def _ref(value: Any) -> Any:
    return ctypes.byref(value)


def _check(a: np.ndarray, ndim: int = 3) -> None:
    if a.dtype != np.float64 or a.ndim != ndim or not a.flags.c_contiguous:
        raise ValueError(f"expected a C-contiguous float64 array of {ndim} dims, "
                         f"got {a.dtype} {a.shape}")


def syrk_lower(c: np.ndarray, x: np.ndarray, alpha: float = 1.0, beta: float = 1.0) -> None:
    """c[i] ← beta·c[i] + alpha·x[i]ᵀx[i] on the lower triangle, in place.

    c: (n, d, d); x: (n, k, d), k rows of dimension d per matrix.
    """
    _check(c)
    _check(x)
    n, k, d = x.shape
    if c.shape != (n, d, d):
        raise ValueError(f"shape mismatch: c {c.shape}, x {x.shape}")
    dim, rows = _ref(ctypes.c_int(d)), _ref(ctypes.c_int(k))
    a, b = _ref(ctypes.c_double(alpha)), _ref(ctypes.c_double(beta))
    upper, no, syrk = _ref(_UPPER), _ref(_NO), _ROUTINES.syrk
    c_addr, x_addr = c.ctypes.data, x.ctypes.data
    c_step, x_step = d * d * 8, k * d * 8
    for i in range(n):
        # Fortran sees x[i] as the d×k matrix xᵀ: 'N' gives xᵀx.
        syrk(upper, no, dim, rows, a, x_addr + i * x_step, dim, b, c_addr + i * c_step, dim)


def cholesky_lower(a: np.ndarray) -> int:
    """In place: the lower triangle of each a[i] becomes L with a[i] = L Lᵀ.

    Returns the index of the first matrix that is not positive definite, or -1.
    """
    _check(a)
    n, d = a.shape[0], a.shape[1]
    info = ctypes.c_int(0)
    dim, upper, status, potrf = _ref(ctypes.c_int(d)), _ref(_UPPER), _ref(info), _ROUTINES.potrf
    addr, step = a.ctypes.data, d * d * 8
    for i in range(n):
        potrf(upper, dim, addr + i * step, dim, status)
        if info.value != 0:
            return i
    return -1


def invert_lower(a: np.ndarray) -> int:
    """In place: the lower-triangular L in each a[i] becomes L⁻¹. Returns the first singular
    index, or -1."""
    _check(a)
    n, d = a.shape[0], a.shape[1]
    info = ctypes.c_int(0)
    dim, upper, no, status = _ref(ctypes.c_int(d)), _ref(_UPPER), _ref(_NO), _ref(info)
    trtri = _ROUTINES.trtri
    addr, step = a.ctypes.data, d * d * 8
    for i in range(n):
        trtri(upper, no, dim, addr + i * step, dim, status)
        if info.value != 0:
            return i
    return -1


def solve_lower(a: np.ndarray, y: np.ndarray) -> None:
    """In place: every row vector v of y[i] (shape (k, d)) becomes L⁻¹v, with L the lower
    triangle of a[i]. Used to whiten a few vectors without forming L⁻¹."""
    _check(a)
    _check(y)
    n, k, d = y.shape
    if a.shape != (n, d, d):
        raise ValueError(f"shape mismatch: a {a.shape}, y {y.shape}")
    dim, rows, one = _ref(ctypes.c_int(d)), _ref(ctypes.c_int(k)), _ref(ctypes.c_double(1.0))
    flags = (_ref(_LEFT), _ref(_UPPER), _ref(_TRANS), _ref(_NO))
    trsm = _ROUTINES.trsm
    a_addr, y_addr = a.ctypes.data, y.ctypes.data
    a_step, y_step = d * d * 8, k * d * 8
    for i in range(n):
        # Fortran: a[i] is U = Lᵀ, y[i] is the d×k matrix of columns v; solve Uᵀ Z = V.
        trsm(*flags, dim, rows, one, a_addr + i * a_step, dim, y_addr + i * y_step, dim)
