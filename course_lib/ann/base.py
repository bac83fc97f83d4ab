"""The index API every chapter-02 index shares: faiss's, so graduates feel at home.

::

    index = SomeIndex(d, metric="l2", **build_params)
    index.train(X_train)          # only where the index needs training (IVF, PQ)
    index.add(X)                  # ids are 0 .. ntotal-1 in insertion order
    D, I = index.search(Q, k, **search_params)   # float32 (nq, k), int64 (nq, k)
    index.ntotal, index.bytes_per_vector, index.stats.dist_per_query
    index.save("idx.npz"); same = Index.load("idx.npz")

Conventions, as in faiss:

* ``metric="l2"`` returns squared L2 distances (smaller is better),
  ``metric="ip"`` inner products (larger is better); rows are sorted best first.
* When fewer than k results exist, the row is padded with id ``-1`` and
  distance ``+inf`` (l2) or ``-inf`` (ip).
* Every distance a search computes is counted (``self.count(n)``), so
  indexes are compared by work done, not only by time.

A subclass implements ``_train`` (if ``needs_training``), ``_add``,
``_search``, ``_ntotal``, ``bytes_per_vector``, and ``_state`` /
``_from_state`` for saving.  The public methods here validate input once,
with the same messages for every index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..validate import as_matrix

METRICS = ("l2", "ip")
_REGISTRY: dict[str, type[Index]] = {}


class NotTrainedError(ValueError):
    """``add`` or ``search`` was called on an index that needs ``train`` first."""


@dataclass
class SearchStats:
    """Work done by the last ``search`` call."""

    n_queries: int = 0
    ndis: int = 0  # distance (or code-distance) computations

    @property
    def dist_per_query(self) -> float:
        return self.ndis / self.n_queries if self.n_queries else 0.0


def pad_results(D: np.ndarray, I: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad result arrays with fewer than k columns to exactly k (id -1, distance ±inf)."""
    nq, have = I.shape
    if have >= k:
        return D[:, :k].astype(np.float32), I[:, :k].astype(np.int64)
    fill = np.inf if metric == "l2" else -np.inf
    D_out = np.full((nq, k), fill, dtype=np.float32)
    I_out = np.full((nq, k), -1, dtype=np.int64)
    D_out[:, :have], I_out[:, :have] = D, I
    return D_out, I_out


class Index:
    """Base class: validation, statistics and persistence shared by every index."""

    needs_training: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, d: int, metric: str = "l2") -> None:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d must be a positive int, got {d!r}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: expected one of {METRICS}")
        self.d = int(d)
        self.metric = metric
        self.is_trained = not self.needs_training
        self.stats = SearchStats()

    # ------------------------------------------------------------------ public API
    @property
    def ntotal(self) -> int:
        """Number of vectors added so far."""
        return self._ntotal()

    def train(self, X: np.ndarray) -> Index:
        """Learn the index's parameters (centroids, codebooks) from representative vectors."""
        X = self._check_vectors(X, "X")
        if self.needs_training:
            self._train(X)
        self.is_trained = True
        return self

    def add(self, X: np.ndarray) -> Index:
        """Add vectors; they get ids ntotal .. ntotal + len(X) - 1."""
        if not self.is_trained:
            raise NotTrainedError(f"{type(self).__name__} must be trained before add(): call train(X) first")
        self._add(self._check_vectors(X, "X"))
        return self

    def search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """The k best results per query: ``(D, I)``, float32 and int64 of shape (nq, k)."""
        if not self.is_trained:
            raise NotTrainedError(f"{type(self).__name__} must be trained before search(): call train(X) first")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if self.ntotal == 0:
            raise ValueError(f"{type(self).__name__} is empty: add() vectors before search()")
        Q = self._check_vectors(Q, "Q")
        self.stats = SearchStats(n_queries=len(Q))
        D, I = self._search(Q, int(k), **params)
        return pad_results(np.asarray(D), np.asarray(I), int(k), self.metric)

    def count(self, n: int) -> None:
        """Record ``n`` distance computations for the current search."""
        self.stats.ndis += int(n)

    @property
    def bytes_per_vector(self) -> float:
        """Memory of the index per stored vector, ids and codes included (bytes)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (.npz); :meth:`load` gives identical search results."""
        params, arrays = self._state()
        header = {"class": type(self).__name__, "d": self.d, "metric": self.metric, "is_trained": self.is_trained, "params": params}
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        return path

    @staticmethod
    def load(path: str | Path) -> Index:
        """Read an index written by :meth:`save` (of any subclass)."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"no index file at {path}")
        with np.load(path, allow_pickle=False) as z:
            if "__header__" not in z:
                raise ValueError(f"{path} is not a course_lib index file")
            header = json.loads(z["__header__"].tobytes().decode())
            arrays = {name: z[name] for name in z.files if name != "__header__"}
        cls = _REGISTRY.get(header["class"])
        if cls is None:
            raise ValueError(f"{path} holds a {header['class']}, which is not a known index class (import its module first)")
        index = cls._from_state(header["d"], header["metric"], header["params"], arrays)
        index.is_trained = header["is_trained"]
        return index

    # ------------------------------------------------------------------ to implement
    def _ntotal(self) -> int:
        raise NotImplementedError

    def _train(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able build parameters, named arrays) that describe the index completely."""
        raise NotImplementedError

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Index:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _check_vectors(self, X: Any, name: str) -> np.ndarray:
        arr = np.asarray(X)
        if arr.ndim == 2 and arr.shape[1] != self.d:
            raise ValueError(f"dimension mismatch: the index has d={self.d} but {name} has d={arr.shape[1]}")
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
        return as_matrix(arr, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal})"


def search_params(params: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Merge ``params`` into ``allowed`` (name -> default); unknown names are a ValueError."""
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"unknown search parameter(s) {sorted(unknown)}; this index takes {sorted(allowed)}")
    return {**allowed, **params}
