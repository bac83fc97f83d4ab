"""Exact search as an index: the baseline every ANN index is measured against."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..vec import exact_knn
from .base import Index, search_params


class FlatIndex(Index):
    """Brute force (faiss ``IndexFlatL2`` / ``IndexFlatIP``): stores raw float32 vectors.

    Every query computes ``ntotal`` distances; recall is 1 by construction.
    """

    def __init__(self, d: int, metric: str = "l2") -> None:
        super().__init__(d, metric)
        self.xb = np.zeros((0, d), dtype=np.float32)

    def _ntotal(self) -> int:
        return len(self.xb)

    def _add(self, X: np.ndarray) -> None:
        self.xb = np.vstack([self.xb, X])

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        search_params(params, {})
        self.count(len(Q) * self.ntotal)
        return exact_knn(Q, self.xb, min(k, self.ntotal), self.metric)

    @property
    def bytes_per_vector(self) -> float:
        return 4.0 * self.d

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"xb": self.xb}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> FlatIndex:
        index = cls(d, metric)
        index.xb = arrays["xb"].astype(np.float32)
        return index
