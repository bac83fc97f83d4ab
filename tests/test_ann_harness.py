"""The chapter-02 benchmark harness (course_lib.ann.harness) and the ANN bench CLI (course_lib.bench)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from course_lib import vec
from course_lib.ann import FlatIndex
from course_lib.ann import harness as H

faiss = pytest.importorskip("faiss")


# --------------------------------------------------------------------------- fixtures
def _dataset(name: str = "toy", n: int = 2000, d: int = 16, nq: int = 50, seed: int = 0, integer: bool = False) -> H.BenchDataset:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n + nq, d)).astype(np.float32) if integer else rng.standard_normal((n + nq, d)).astype(np.float32)
    return H.make_dataset(name, X, nq, seed=seed)


@pytest.fixture(scope="module")
def toy() -> H.BenchDataset:
    return _dataset()


def _flat(xb):
    return FlatIndex(xb.shape[1]).add(xb)


def _faiss_flat(xb):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    return H.FaissAdapter(index)


def _brute_front(P: np.ndarray) -> list[int]:
    """The definition, literally: i is on the front unless some j is >= in both and > in one."""
    return [i for i in range(len(P)) if not any((P[j] >= P[i]).all() and (P[j] > P[i]).any() for j in range(len(P)))]


# --------------------------------------------------------------------------- pareto_front
def test_pareto_front_basic_and_sorted():
    pts = [(0.9, 100.0), (0.5, 1000.0), (0.8, 50.0), (1.0, 10.0), (0.5, 900.0)]
    assert H.pareto_front(pts).tolist() == [0, 1, 3]
    assert H.pareto_front(np.array(pts)).dtype == np.int64


def test_pareto_front_ties_and_duplicates():
    # tie in one coordinate, worse in the other: dominated
    assert H.pareto_front([(0.9, 100.0), (0.9, 50.0)]).tolist() == [0]
    # exact duplicates do not dominate each other: both stay
    assert H.pareto_front([(0.9, 100.0), (0.9, 100.0), (0.5, 10.0)]).tolist() == [0, 1]
    # duplicates that are dominated both leave
    assert H.pareto_front([(0.5, 10.0), (0.5, 10.0), (0.9, 100.0)]).tolist() == [2]


def test_pareto_front_edges():
    assert H.pareto_front(np.zeros((0, 2))).tolist() == []
    assert H.pareto_front([]).tolist() == []
    assert H.pareto_front([(0.3, 7.0)]).tolist() == [0]
    with pytest.raises(ValueError, match="shape"):
        H.pareto_front(np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        H.pareto_front([(np.nan, 1.0), (0.5, 2.0)])


def test_pareto_front_matches_the_definition_on_random_ties(rng):
    for _ in range(20):
        P = rng.integers(0, 5, size=(int(rng.integers(1, 40)), 2)).astype(float)  # many ties and duplicates
        assert H.pareto_front(P).tolist() == _brute_front(P)


def test_record_front_minimises_costs():
    recs = [H.RunRecord("a", "faiss", "X", {"i": i}, rec, 1.0, 1.0, 1.0, b, None)
            for i, (rec, b) in enumerate([(1.0, 128.0), (0.9, 16.0), (0.8, 32.0), (0.95, 300.0)])]
    assert H.record_front(recs, x="bytes_per_vector") == [0, 1]  # fewer bytes is better
    assert H.record_front(recs, x="qps_batch") == [0]  # equal QPS: the best recall alone


# --------------------------------------------------------------------------- evaluate
def test_evaluate_flat_course_and_faiss(toy):
    ours = H.evaluate("Flat", _flat, toy, [{}], "course", repeats=1, n_single=10)
    ref = H.evaluate("Flat", _faiss_flat, toy, [{}], "faiss", repeats=1, n_single=10)
    for r in ours + ref:
        assert [f.name for f in dataclasses.fields(r)] == [
            "dataset", "implementation", "index", "params", "recall_at_10", "qps_single", "qps_batch",
            "build_s", "bytes_per_vector", "dist_per_query"]
        assert r.recall_at_10 == 1.0 and r.dist_per_query == toy.n
        assert r.qps_single > 0 and r.qps_batch > 0 and r.build_s >= 0
    assert ours[0].bytes_per_vector == 4 * toy.d
    # faiss's serialized flat index: the raw vectors plus a small header
    assert 4 * toy.d <= ref[0].bytes_per_vector < 4 * toy.d + 1


def test_tie_aware_recall_of_exact_search_is_one_with_ties():
    ds = _dataset(integer=True)  # values in {0, 1, 2}: ties at the 10th distance everywhere
    ours = H.evaluate("Flat", _flat, ds, [{}], "course", repeats=1, n_single=5)[0]
    ref = H.evaluate("Flat", _faiss_flat, ds, [{}], "faiss", repeats=1, n_single=5)[0]
    assert ours.recall_at_10 == 1.0 and ref.recall_at_10 == 1.0
    # an answer that drops the true neighbours scores below 1
    bad = np.tile(np.arange(10), (len(ds.xq), 1))
    assert H.tie_aware_recall(ds, bad) < 1.0


def test_evaluate_faiss_ivf_sweep(toy):
    nlist = 16

    def build(xb):
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(xb.shape[1]), xb.shape[1], nlist)
        index.train(xb)
        index.add(xb)
        return H.FaissAdapter(index)

    recs = H.evaluate("IVF-Flat", build, toy, [{"nprobe": p} for p in (1, 4, nlist)], "faiss",
                      build_params={"nlist": nlist}, repeats=1, n_single=5)
    assert [r.params for r in recs] == [{"nlist": nlist, "nprobe": p} for p in (1, 4, nlist)]
    recalls = [r.recall_at_10 for r in recs]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
    work = [r.dist_per_query for r in recs]
    assert work == sorted(work) and work[-1] == toy.n  # probing every list scans every vector
    assert len({r.build_s for r in recs}) == 1  # built once


def test_evaluate_hnsw_references(toy):
    hnswlib = pytest.importorskip("hnswlib")

    def build_faiss(xb):
        index = faiss.IndexHNSWFlat(xb.shape[1], 16)
        index.add(xb)
        return H.FaissAdapter(index)

    def build_hnswlib(xb):
        index = hnswlib.Index(space="l2", dim=xb.shape[1])
        index.init_index(max_elements=len(xb), M=16, ef_construction=100, random_seed=0)
        index.add_items(xb, num_threads=1)
        return H.HnswlibAdapter(index)

    f = H.evaluate("HNSW", build_faiss, toy, [{"ef": 16}, {"ef": 128}], "faiss", repeats=1, n_single=5)
    h = H.evaluate("HNSW", build_hnswlib, toy, [{"ef": 16}, {"ef": 128}], "hnswlib", repeats=1, n_single=5)
    assert f[1].recall_at_10 >= 0.95 and h[1].recall_at_10 >= 0.95
    assert 0 < f[0].dist_per_query < f[1].dist_per_query < toy.n
    assert h[0].dist_per_query is None  # hnswlib does not count
    assert h[0].bytes_per_vector > 4 * toy.d  # vectors plus links


def test_adapters_reject_unknown_parameters(toy):
    index = faiss.IndexFlatL2(toy.d)
    index.add(toy.xb)
    with pytest.raises(ValueError, match="does not apply"):
        H.FaissAdapter(index).search(toy.xq, 10, nprobe=3)
    with pytest.raises(ValueError, match="unknown search parameter"):
        H.evaluate("Flat", _flat, toy, [{"nprobe": 2}], "course", repeats=1, n_single=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"implementation": "annoy"}, "implementation"),
        ({"search_grid": []}, "non-empty"),
        ({"search_grid": [3]}, "dicts"),
        ({"repeats": 0}, "repeats"),
        ({"build_fn": lambda xb: "not an index"}, "build_fn must return"),
    ],
)
def test_evaluate_bad_input(toy, kwargs, message):
    args = {"name": "Flat", "build_fn": _flat, "dataset": toy, "search_grid": [{}], "implementation": "course", **kwargs}
    with pytest.raises(ValueError, match=message):
        H.evaluate(**args)


# --------------------------------------------------------------------------- datasets
def test_make_datasets_small():
    sets = H.make_datasets("small", seed=0)
    assert [s.name for s in sets[:2]] == ["gaussian-mixture", "minilm"]
    mix, minilm = sets[:2]
    assert mix.xb.shape == (20_000, 32) and mix.xq.shape == (200, 32)
    assert minilm.d == 384 and np.allclose(np.linalg.norm(minilm.xb, axis=1), 1, atol=1e-5)
    for s in sets:
        assert s.gt.k == 100 and s.metric == "l2" and 1 < s.intrinsic_dim < s.d
        assert s.xb.dtype == np.float32 and s.gt.I.shape == (len(s.xq), 100)


def test_head_recomputes_ground_truth(toy):
    small = toy.head(500)
    assert small.n == 500 and small.name == "toy[:500]" and small.gt.I.max() < 500
    np.testing.assert_array_equal(small.gt.I, vec.ground_truth(toy.xq, toy.xb[:500], 100).I)
    assert toy.head(toy.n) is toy
    with pytest.raises(ValueError):
        toy.head(0)


# --------------------------------------------------------------------------- ratios, ledger, plots
def _rec(impl, params, recall, qps, dataset="a", index="IVF-Flat"):
    return H.RunRecord(dataset, impl, index, params, recall, qps / 2, qps, 1.0, 100.0, None)


def test_ratio_rows_equal_params_and_matched_recall():
    recs = [
        _rec("course", {"nprobe": 1}, 0.6, 100.0), _rec("course", {"nprobe": 4}, 0.9, 50.0),
        _rec("faiss", {"nprobe": 1}, 0.6, 1000.0), _rec("faiss", {"nprobe": 4}, 0.95, 400.0),
        _rec("faiss", {"nprobe": 4}, 0.95, 400.0, dataset="other"),  # another dataset: never paired
    ]
    rows = H.ratio_rows(recs)
    assert len(rows) == 2
    assert rows[0]["QPS batch ratio"] == pytest.approx(0.1) and rows[0]["recall diff"] == pytest.approx(0.0)
    # at matched recall: the fastest faiss setting with recall >= ours (0.6 -> the 1000 QPS one)
    assert rows[0]["QPS ratio at matched recall"] == pytest.approx(0.1)
    assert rows[1]["QPS ratio at matched recall"] == pytest.approx(50 / 400)
    assert rows[1]["recall diff"] == pytest.approx(-0.05)
    table = H.ratio_table(recs)
    assert table.count("\n") == 4 and "| a | IVF-Flat | nprobe=1 | faiss |" in table
    assert "no course record" in H.ratio_table([recs[2]])


def test_ledger_round_trip_and_append(tmp_path):
    path = tmp_path / "sub" / "ledger.json"
    first = [_rec("course", {"nprobe": 1}, 0.6, 100.0), _rec("faiss", {"nprobe": 1}, 0.6, 1000.0)]
    H.save_records(first, path)
    assert H.load_records(path) == first
    rerun = [_rec("course", {"nprobe": 1}, 0.7, 120.0), _rec("course", {"nprobe": 8}, 0.99, 20.0)]
    H.save_records(rerun, path, append=True)
    got = H.load_records(path)
    assert len(got) == 3 and got[0] == first[1] and got[1:] == rerun  # the re-run replaced its old record
    H.save_records(rerun, path)  # no append: overwrite
    assert H.load_records(path) == rerun
    (tmp_path / "bad.json").write_text(json.dumps([{"dataset": "x"}]))
    with pytest.raises(ValueError, match="RunRecords"):
        H.load_records(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no records"):
        H.load_records(tmp_path / "missing.json")


def test_plots_draw_points_and_fronts():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [_rec("course", {"nprobe": 1}, 0.6, 100.0), _rec("faiss", {"nprobe": 1}, 0.6, 1000.0),
            _rec("faiss", {"nprobe": 4}, 0.95, 400.0), _rec("hnswlib", {"ef": 16}, 0.9, 2000.0, index="HNSW")]
    ax = H.plot_pareto(recs, title="t")
    assert ax.get_xscale() == "log" and len(ax.collections) == 3  # one scatter per (implementation, family)
    assert len(ax.lines) == 3  # one step front per implementation
    ax = H.plot_recall_vs_bytes(recs, dataset="a")
    assert "bytes" in ax.get_xlabel()
    plt.close("all")


# --------------------------------------------------------------------------- bench CLI
def test_bench_runs_flat_and_skips_missing_classes(tmp_path):
    from course_lib import bench

    sweep = {
        "Flat": bench.SWEEP["Flat"],
        "IVF-Flat": {**bench.SWEEP["IVF-Flat"], "course": "NoSuchIndex", "module": "no_such_module",
                     "search": [{"nprobe": 1}, {"nprobe": 4}]},
    }
    notes: list[str] = []
    records = bench.run_ann("small", sweep=sweep, datasets=[_dataset(n=1000, nq=20)], repeats=1, log=notes.append)
    assert any("no NoSuchIndex" in n for n in notes)
    got = {(r.implementation, r.index) for r in records}
    assert got == {("course", "Flat"), ("faiss", "Flat"), ("faiss", "IVF-Flat")}
    assert all(r.recall_at_10 == 1.0 for r in records if r.index == "Flat")
    bench.write_outputs(records, tmp_path, "small")
    for name in ("ann.json", "pareto_qps.png", "pareto_bytes.png", "ratios.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(H.load_records(tmp_path / "ann.json")) == len(records)
    assert "| toy | Flat | - | faiss | 1.000 | 1.000 | +0.000 |" in (tmp_path / "ratios.md").read_text()
    with pytest.raises(ValueError, match="unknown index families"):
        bench.run_ann("small", only=["Annoy"], datasets=[])
