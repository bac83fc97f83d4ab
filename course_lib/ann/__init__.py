"""Approximate nearest-neighbour indexes, built from scratch with faiss's API (chapter 02).

* :mod:`.base`: the shared ``Index`` API (train/add/search/save/load, distance counting).
* :mod:`.flat`: exact search, the baseline.
* :mod:`.kmeans`: k-means as faiss trains it (IVF centroids, PQ codebooks).
* :mod:`.lsh`: SimHash codes (faiss ``IndexLSH``) and bucketed multi-probe LSH.
* :mod:`.ivf`: IVF-Flat.
* :mod:`.pq`: product quantization (ADC, SDC).
* :mod:`.ivfpq`: IVF + PQ of residuals, with exact re-rank.
* :mod:`.hnsw`: HNSW.
* :mod:`.vamana`: Vamana graphs and DiskANN's SSD-resident search (simulated).
* :mod:`.harness`: the benchmark harness (recall, QPS, bytes, distances; Pareto fronts).
* :mod:`.choose`: ``recommend_index``.

Importing this package imports every index module, so :meth:`Index.load` can
rebuild any saved index.
"""

from .base import Index, NotTrainedError, SearchStats, pad_results
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFFlatIndex
from .ivfpq import IVFPQIndex, IVFPQRefineIndex
from .lsh import LSHCodeIndex, LSHTableIndex
from .pq import PQIndex, ProductQuantizer
from .vamana import DiskANNIndex, VamanaIndex

__all__ = [
    "DiskANNIndex",
    "FlatIndex",
    "HNSWIndex",
    "IVFFlatIndex",
    "IVFPQIndex",
    "IVFPQRefineIndex",
    "Index",
    "LSHCodeIndex",
    "LSHTableIndex",
    "NotTrainedError",
    "PQIndex",
    "ProductQuantizer",
    "SearchStats",
    "VamanaIndex",
    "pad_results",
]
