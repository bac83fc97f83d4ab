"""Approximate nearest-neighbour indexes, built from scratch with faiss's API (chapter 02).

* :mod:`.base`: the shared ``Index`` API (train/add/search/save/load, distance counting).
* :mod:`.flat`: exact search, the baseline.
"""

from .base import Index, NotTrainedError, SearchStats, pad_results
from .flat import FlatIndex

__all__ = ["FlatIndex", "Index", "NotTrainedError", "SearchStats", "pad_results"]
