"""Input validation shared by every course_lib function.

The messages follow scikit-learn's habit: say what was expected and what
arrived, so a learner can fix the call without reading our source.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_matrix(x: Any, name: str, *, dtype: type = np.float32, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous 2-D array of ``dtype`` (float32 by default).

    Raises ``ValueError`` for a wrong number of dimensions, a non-numeric dtype,
    NaN or infinity, or (unless ``allow_empty``) zero rows.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (n, d), got shape {arr.shape}")
    if not allow_empty and arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): need at least one row")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero dimensions (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"dimension mismatch: {name_a} has d={a.shape[1]} but {name_b} has d={b.shape[1]}"
        )


def check_k(k: Any, n: int, *, what: str = "the database") -> int:
    """Return ``k`` as an int after checking ``1 <= k <= n``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} is larger than {what} (n={n})")
    return int(k)


def check_ids(ids: Any, name: str) -> np.ndarray:
    """Return ``ids`` as a 2-D int64 array (one row per query); -1 marks 'no result'."""
    arr = np.asarray(ids)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_queries, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite real number within bounds.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``: ``check_number(x, "rate",
    low=0, low_open=True)`` demands ``rate > 0``.  Booleans are rejected (``True`` is not a rate).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as a Python int after checking it is an integer (not a bool) in ``[low, high]``."""
    bounds = " and ".join(s for s in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if s)
    expected = f"an int {bounds}".rstrip()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)
