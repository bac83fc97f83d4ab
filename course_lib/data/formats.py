"""Loaders and writers for the standard ANN benchmark file formats.

With these, a learner who has downloaded a public benchmark can run a lesson
at ``full`` size on real data:

* ``.fvecs`` / ``.ivecs`` / ``.bvecs`` (the INRIA TEXMEX format of SIFT1M,
  GIST1M, SIFT1B, http://corpus-texmex.irisa.fr/).  Each vector is stored as a
  little-endian int32 dimension ``d`` followed by ``d`` values: float32
  (fvecs), int32 (ivecs, e.g. ground-truth neighbour ids) or uint8 (bvecs).
  Every record of a file has the same ``d``, so the file is a 2-D table of
  records and one ``reshape`` reads it, with no Python loop.
* ann-benchmarks HDF5 (https://github.com/erikbern/ann-benchmarks): datasets
  ``train``, ``test``, ``neighbors`` and ``distances``, and the metric in the
  file attribute ``distance`` ("euclidean", "angular", ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..validate import as_matrix, check_same_dim

#: Byte layout of one value in each format (all little-endian).
VEC_DTYPES: dict[str, np.dtype] = {
    "fvecs": np.dtype("<f4"),
    "ivecs": np.dtype("<i4"),
    "bvecs": np.dtype("u1"),
}
_HEADER = np.dtype("<i4")  # the per-vector dimension

#: Datasets every ann-benchmarks HDF5 file holds.
ANN_KEYS: tuple[str, ...] = ("train", "test", "neighbors", "distances")
#: Metrics ann-benchmarks uses (the ``distance`` attribute).
ANN_METRICS: frozenset[str] = frozenset({"euclidean", "angular", "hamming", "jaccard"})


# --------------------------------------------------------------------------
# fvecs / ivecs / bvecs
# --------------------------------------------------------------------------


def _check_count(count: Any, n: int, path: Path) -> int:
    if count is None:
        return n
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int or None, got {count!r}")
    if count > n:
        raise ValueError(f"count={count} but {path} holds only {n} vectors")
    return int(count)


def _read_vecs(path: str | Path, kind: str, count: int | None) -> np.ndarray:
    """Read the first ``count`` vectors of a ``.{kind}`` file as an (n, d) array."""
    path = Path(path)
    value = VEC_DTYPES[kind]
    size = path.stat().st_size  # FileNotFoundError names the path
    if size == 0:
        raise ValueError(f"{path} is empty: a .{kind} file holds at least one vector")
    if size < _HEADER.itemsize:
        raise ValueError(f"{path} is truncated: {size} bytes, too short for even one dimension header")
    d = int(np.fromfile(path, dtype=_HEADER, count=1)[0])
    if d <= 0:
        raise ValueError(f"{path}: the first vector claims dimension {d}; is this really a .{kind} file?")
    record = _HEADER.itemsize + d * value.itemsize
    if size % record != 0:
        raise ValueError(
            f"{path} is truncated or not a .{kind} file: its size {size} bytes is not a multiple of "
            f"the record size {record} bytes (4-byte dimension + {d} values of {value.itemsize} bytes)"
        )
    n = _check_count(count, size // record, path)

    # View the file as an (n, record) table of bytes; only the rows read are loaded.
    rows = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, record))
    dims = np.ascontiguousarray(rows[:, : _HEADER.itemsize]).view(_HEADER).ravel()
    bad = np.flatnonzero(dims != d)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{path}: inconsistent dimensions: vector {i} has d={int(dims[i])} but vector 0 has d={d}"
        )
    values = np.ascontiguousarray(rows[:, _HEADER.itemsize :]).view(value)
    del rows  # release the memory map (Windows keeps the file locked otherwise)
    return values.astype(value.newbyteorder("="), copy=False)


def read_fvecs(path: str | Path, count: int | None = None) -> np.ndarray:
    """Read a ``.fvecs`` file (e.g. SIFT1M ``sift_base.fvecs``).

    Parameters
    ----------
    path : the file.
    count : read only the first ``count`` vectors (None: all).

    Returns
    -------
    float32 array of shape (count, d).
    """
    return _read_vecs(path, "fvecs", count)


def read_ivecs(path: str | Path, count: int | None = None) -> np.ndarray:
    """Read a ``.ivecs`` file (e.g. ``sift_groundtruth.ivecs``): int32 (count, d)."""
    return _read_vecs(path, "ivecs", count)


def read_bvecs(path: str | Path, count: int | None = None) -> np.ndarray:
    """Read a ``.bvecs`` file (e.g. SIFT1B ``bigann_base.bvecs``): uint8 (count, d)."""
    return _read_vecs(path, "bvecs", count)


def _check_integer_matrix(X: Any, name: str, low: int, high: int) -> np.ndarray:
    """``X`` as a non-empty 2-D integer array with every value in [low, high]."""
    arr = np.asarray(X)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D with shape (n, d), n, d >= 1, got shape {arr.shape}")
    if arr.min() < low or arr.max() > high:
        raise ValueError(
            f"{name} has values in [{arr.min()}, {arr.max()}], outside the range [{low}, {high}] of the format"
        )
    return arr


def _write_vecs(path: str | Path, values: np.ndarray, kind: str) -> Path:
    """Write an (n, d) array as records ``[int32 d][d values]``."""
    path = Path(path)
    n, d = values.shape
    value = VEC_DTYPES[kind]
    rows = np.empty((n, _HEADER.itemsize + d * value.itemsize), dtype=np.uint8)
    rows[:, : _HEADER.itemsize] = np.array([d], dtype=_HEADER).view(np.uint8)
    rows[:, _HEADER.itemsize :] = np.ascontiguousarray(values, dtype=value).view(np.uint8).reshape(n, -1)
    rows.tofile(path)
    return path


def write_fvecs(path: str | Path, X: Any) -> Path:
    """Write a real (n, d) array as ``.fvecs`` (values stored as float32); returns ``path``."""
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"X must be a floating-point array for .fvecs, got dtype {arr.dtype}")
    return _write_vecs(path, as_matrix(arr, "X", dtype=np.float32), "fvecs")


def write_ivecs(path: str | Path, X: Any) -> Path:
    """Write an integer (n, d) array as ``.ivecs`` (values must fit int32); returns ``path``."""
    info = np.iinfo(np.int32)
    return _write_vecs(path, _check_integer_matrix(X, "X", info.min, info.max), "ivecs")


def write_bvecs(path: str | Path, X: Any) -> Path:
    """Write an integer (n, d) array with values in [0, 255] as ``.bvecs``; returns ``path``."""
    return _write_vecs(path, _check_integer_matrix(X, "X", 0, 255), "bvecs")


# --------------------------------------------------------------------------
# ann-benchmarks HDF5
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class AnnBenchmarksDataset:
    """One ann-benchmarks dataset, held in memory.

    Attributes
    ----------
    train : float32 (n, d), the database.
    test : float32 (q, d), the queries.
    neighbors : int64 (q, k), ids into ``train`` of each query's true k nearest, nearest first.
    distances : float32 (q, k), their distances under ``metric``.
    metric : "euclidean", "angular" (cosine distance), "hamming" or "jaccard".
    name : the file's stem, e.g. "glove-100-angular".
    """

    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    metric: str
    name: str = ""

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        return int(self.train.shape[1])

    @property
    def k(self) -> int:
        """Number of ground-truth neighbours per query."""
        return int(self.neighbors.shape[1])

    def __repr__(self) -> str:
        return (
            f"AnnBenchmarksDataset(name={self.name!r}, metric={self.metric!r}, "
            f"train={self.train.shape}, test={self.test.shape}, k={self.k})"
        )


def _check_ground_truth(neighbors: Any, distances: Any, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """``neighbors`` as int64 and ``distances`` as float32, both (n_test, k), ids in [0, n_train)."""
    nbrs = np.asarray(neighbors)
    if nbrs.dtype == np.bool_ or not np.issubdtype(nbrs.dtype, np.integer):
        raise ValueError(f"neighbors must hold integer ids, got dtype {nbrs.dtype}")
    dist = np.asarray(distances)
    if not np.issubdtype(dist.dtype, np.number):
        raise ValueError(f"distances must be numeric, got dtype {dist.dtype}")
    if nbrs.ndim != 2 or nbrs.shape[0] != n_test:
        raise ValueError(f"neighbors must have shape (n_test={n_test}, k), got {nbrs.shape}")
    if dist.shape != nbrs.shape:
        raise ValueError(f"distances must have the shape of neighbors {nbrs.shape}, got {dist.shape}")
    if nbrs.size and (nbrs.min() < 0 or nbrs.max() >= n_train):
        raise ValueError(f"neighbors must be ids in [0, {n_train}), got values in [{nbrs.min()}, {nbrs.max()}]")
    return nbrs.astype(np.int64), dist.astype(np.float32)


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError("ann-benchmarks files are HDF5: install h5py (pip install h5py)") from err
    return h5py


def load_ann_benchmarks_hdf5(path: str | Path) -> AnnBenchmarksDataset:
    """Load an ann-benchmarks HDF5 file (e.g. ``glove-100-angular.hdf5``).

    Only dense datasets are supported (not the variable-length sets of the
    jaccard benchmarks).  Everything is read into memory.

    Returns
    -------
    AnnBenchmarksDataset with train/test float32, neighbors int64, distances float32.

    Raises
    ------
    ValueError
        If a dataset or the ``distance`` attribute is missing, or shapes disagree.
    """
    h5py = _import_h5py()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (ann-benchmarks files are at https://ann-benchmarks.com)")
    with h5py.File(path, "r") as f:
        missing = [key for key in ANN_KEYS if key not in f]
        if missing:
            raise ValueError(
                f"{path} is not an ann-benchmarks file: missing dataset(s) {missing}, found {sorted(f.keys())}"
            )
        metric = f.attrs.get("distance")
        if metric is None:
            raise ValueError(f"{path} has no 'distance' attribute naming the metric")
        arrays = {key: f[key][()] for key in ANN_KEYS}
    metric = metric.decode() if isinstance(metric, bytes) else str(metric)
    train = as_matrix(arrays["train"], "train")
    test = as_matrix(arrays["test"], "test")
    check_same_dim(train, test, "train", "test")
    neighbors, distances = _check_ground_truth(arrays["neighbors"], arrays["distances"], len(train), len(test))
    return AnnBenchmarksDataset(train, test, neighbors, distances, metric, name=path.stem)


def write_ann_benchmarks_hdf5(
    path: str | Path, train: Any, test: Any, neighbors: Any, distances: Any, metric: str
) -> Path:
    """Write a dataset in the ann-benchmarks HDF5 layout; returns ``path``.

    Parameters
    ----------
    train : (n, d) database vectors, stored as float32.
    test : (q, d) queries, stored as float32.
    neighbors : (q, k) integer ids into ``train``, nearest first.
    distances : (q, k) distances matching ``neighbors``.
    metric : one of "euclidean", "angular", "hamming", "jaccard".
    """
    if metric not in ANN_METRICS:
        raise ValueError(f"metric must be one of {sorted(ANN_METRICS)}, got {metric!r}")
    train = as_matrix(train, "train")
    test = as_matrix(test, "test")
    check_same_dim(train, test, "train", "test")
    neighbors, distances = _check_ground_truth(neighbors, distances, len(train), len(test))
    h5py = _import_h5py()
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = metric
        f.attrs["point_type"] = "float"
        f.attrs["dimension"] = train.shape[1]
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors)
        f.create_dataset("distances", data=distances)
    return path
