"""Tests for course_lib.data.formats: fvecs/ivecs/bvecs and ann-benchmarks HDF5."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.data.formats import (
    AnnBenchmarksDataset,
    load_ann_benchmarks_hdf5,
    read_bvecs,
    read_fvecs,
    read_ivecs,
    write_ann_benchmarks_hdf5,
    write_bvecs,
    write_fvecs,
    write_ivecs,
)

RNG = np.random.default_rng(0)
CASES = {
    "fvecs": (read_fvecs, write_fvecs, RNG.standard_normal((7, 5)).astype(np.float32)),
    "ivecs": (read_ivecs, write_ivecs, RNG.integers(-(2**31), 2**31 - 1, size=(7, 5), dtype=np.int64)),
    "bvecs": (read_bvecs, write_bvecs, RNG.integers(0, 256, size=(7, 5)).astype(np.uint8)),
}
DTYPES = {"fvecs": np.float32, "ivecs": np.int32, "bvecs": np.uint8}


# ---------------------------------------------------------------- vec formats


@pytest.mark.parametrize("kind", sorted(CASES))
def test_vecs_round_trip(tmp_path, kind):
    read, write, X = CASES[kind]
    path = write(tmp_path / f"x.{kind}", X)
    Y = read(path)
    assert Y.dtype == DTYPES[kind] and Y.shape == X.shape
    np.testing.assert_array_equal(Y, X)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_vecs_count_reads_a_prefix(tmp_path, kind):
    read, write, X = CASES[kind]
    path = write(tmp_path / f"x.{kind}", X)
    np.testing.assert_array_equal(read(path, count=3), X[:3])
    np.testing.assert_array_equal(read(path, count=7), X)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="count"):
            read(path, count=bad)
    with pytest.raises(ValueError, match="holds only 7"):
        read(path, count=8)


def test_fvecs_byte_layout(tmp_path):
    """One record is int32 d followed by d little-endian float32 values."""
    path = write_fvecs(tmp_path / "x.fvecs", np.array([[1.0, 2.0]], dtype=np.float64))
    raw = path.read_bytes()
    assert raw == np.array([2], "<i4").tobytes() + np.array([1.0, 2.0], "<f4").tobytes()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_vecs_truncated_file(tmp_path, kind):
    read, write, X = CASES[kind]
    path = write(tmp_path / f"x.{kind}", X)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read(path)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_vecs_empty_file(tmp_path, kind):
    read, _, _ = CASES[kind]
    path = tmp_path / f"empty.{kind}"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read(path)


def test_vecs_too_short_for_a_header(tmp_path):
    path = tmp_path / "x.fvecs"
    path.write_bytes(b"\x02\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_fvecs(path)


def test_vecs_nonpositive_dimension(tmp_path):
    path = tmp_path / "x.ivecs"
    np.array([0, 1, 2], "<i4").tofile(path)
    with pytest.raises(ValueError, match="dimension 0"):
        read_ivecs(path)


def test_vecs_inconsistent_dimensions(tmp_path):
    # Two 12-byte records, so the size check passes, but the second header says 3.
    path = tmp_path / "x.ivecs"
    np.array([2, 10, 11, 3, 20, 21], "<i4").tofile(path)
    with pytest.raises(ValueError, match="inconsistent dimensions: vector 1 has d=3"):
        read_ivecs(path)


def test_vecs_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_fvecs(tmp_path / "nope.fvecs")


@pytest.mark.parametrize(
    "write, X, match",
    [
        (write_fvecs, np.arange(6).reshape(2, 3), "floating-point"),
        (write_fvecs, np.ones(3, dtype=np.float32), "2-D"),
        (write_fvecs, np.ones((0, 3), dtype=np.float32), "empty"),
        (write_fvecs, np.array([[np.nan, 1.0]]), "NaN"),
        (write_ivecs, np.ones((2, 3), dtype=np.float32), "integer"),
        (write_ivecs, np.array([[2**31]], dtype=np.int64), "outside the range"),
        (write_ivecs, np.ones((2, 0), dtype=np.int32), "shape"),
        (write_bvecs, np.array([[256]]), "outside the range"),
        (write_bvecs, np.array([[-1]]), "outside the range"),
        (write_bvecs, np.ones((2, 2, 2), dtype=np.uint8), "2-D"),
        (write_bvecs, np.ones((2, 2), dtype=bool), "integer"),
    ],
)
def test_vec_writers_validate_input(tmp_path, write, X, match):
    with pytest.raises(ValueError, match=match):
        write(tmp_path / "x.vecs", X)


# ---------------------------------------------------------------- ann-benchmarks HDF5


def _small_ann_dataset(metric: str = "euclidean"):
    rng = np.random.default_rng(1)
    train = rng.standard_normal((50, 8)).astype(np.float32)
    test = rng.standard_normal((4, 8)).astype(np.float32)
    d = np.linalg.norm(test[:, None, :] - train[None, :, :], axis=2)
    neighbors = np.argsort(d, axis=1)[:, :10].astype(np.int32)  # ann-benchmarks files often store int32
    distances = np.take_along_axis(d, neighbors, axis=1)
    return train, test, neighbors, distances


def test_hdf5_round_trip(tmp_path):
    pytest.importorskip("h5py")
    train, test, neighbors, distances = _small_ann_dataset()
    path = write_ann_benchmarks_hdf5(tmp_path / "toy-8-euclidean.hdf5", train, test, neighbors, distances, "euclidean")
    ds = load_ann_benchmarks_hdf5(path)
    assert isinstance(ds, AnnBenchmarksDataset)
    assert ds.name == "toy-8-euclidean" and ds.metric == "euclidean"
    assert (ds.dim, ds.k) == (8, 10)
    assert ds.train.dtype == np.float32 and ds.test.dtype == np.float32
    assert ds.neighbors.dtype == np.int64 and ds.distances.dtype == np.float32
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)
    np.testing.assert_array_equal(ds.neighbors, neighbors)
    np.testing.assert_allclose(ds.distances, distances, rtol=1e-6)
    assert "toy-8-euclidean" in repr(ds) and "(50, 8)" in repr(ds)
    with pytest.raises(AttributeError):
        ds.metric = "angular"  # frozen


def test_hdf5_missing_dataset_key(tmp_path):
    h5py = pytest.importorskip("h5py")
    train, test, neighbors, _ = _small_ann_dataset()
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "euclidean"
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors)
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['distances'\]"):
        load_ann_benchmarks_hdf5(path)


def test_hdf5_missing_metric_attribute(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "nometric.hdf5"
    with h5py.File(path, "w") as f:
        for key, value in zip(("train", "test", "neighbors", "distances"), _small_ann_dataset()):
            f.create_dataset(key, data=value)
    with pytest.raises(ValueError, match="distance"):
        load_ann_benchmarks_hdf5(path)


def test_hdf5_missing_file(tmp_path):
    pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError, match="ann-benchmarks"):
        load_ann_benchmarks_hdf5(tmp_path / "nope.hdf5")


def test_hdf5_writer_validates_input(tmp_path):
    pytest.importorskip("h5py")
    train, test, neighbors, distances = _small_ann_dataset()
    path = tmp_path / "x.hdf5"
    with pytest.raises(ValueError, match="metric"):
        write_ann_benchmarks_hdf5(path, train, test, neighbors, distances, "cosine")
    with pytest.raises(ValueError, match="dimension mismatch"):
        write_ann_benchmarks_hdf5(path, train, test[:, :4], neighbors, distances, "euclidean")
    with pytest.raises(ValueError, match="n_test=4"):
        write_ann_benchmarks_hdf5(path, train, test, neighbors[:3], distances[:3], "euclidean")
    with pytest.raises(ValueError, match="shape of neighbors"):
        write_ann_benchmarks_hdf5(path, train, test, neighbors, distances[:, :5], "euclidean")
    with pytest.raises(ValueError, match=r"ids in \[0, 50\)"):
        write_ann_benchmarks_hdf5(path, train, test, neighbors + 50, distances, "euclidean")
    with pytest.raises(ValueError, match="integer ids"):
        write_ann_benchmarks_hdf5(path, train, test, neighbors.astype(float), distances, "euclidean")
