"""Tests for course_lib.ir.metrics: hand-worked values, bad input, and equality with
pytrec_eval and ir_measures (within 1e-9) on random runs with ties and graded judgments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.ir import metrics
from course_lib.ir.metrics import (
    average_precision,
    evaluate,
    mrr,
    ndcg_at_k,
    precision_at_k,
    rank,
    read_trec_qrels,
    read_trec_run,
    recall_at_k,
    to_trec_qrels,
    to_trec_run,
    write_trec_run,
)

TOL = 1e-9

# One query worked by hand: d (0.9) first, then the tie a/b at 0.5 broken by doc
# id descending ("b" before "a"); c is judged non-relevant, x relevant but unretrieved.
RUN = {"q1": {"a": 0.5, "b": 0.5, "d": 0.9}}
QRELS = {"q1": {"a": 2, "b": 1, "c": 0, "x": 1}}


def test_rank_breaks_ties_by_doc_id_descending_as_strings():
    assert rank({"a": 0.5, "b": 0.5, "d": 0.9}) == ["d", "b", "a"]
    # as strings, "9" > "10": trec_eval's strcmp order, not numeric order
    assert rank({10: 1.0, 9: 1.0, 2: 3.0}) == ["2", "9", "10"]


def test_hand_worked_values():
    # ranking d, b, a with gains 0, 1, 2; ideal gains 2, 1, 1
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RUN, QRELS, 10) == pytest.approx(dcg / idcg, abs=TOL)
    assert ndcg_at_k(RUN, QRELS, 1) == 0.0
    assert recall_at_k(RUN, QRELS, 2) == pytest.approx(1 / 3, abs=TOL)
    assert recall_at_k(RUN, QRELS, 100) == pytest.approx(2 / 3, abs=TOL)
    assert precision_at_k(RUN, QRELS, 2) == pytest.approx(1 / 2, abs=TOL)
    assert precision_at_k(RUN, QRELS, 10) == pytest.approx(2 / 10, abs=TOL)  # not excused for a short run
    assert mrr(RUN, QRELS) == pytest.approx(1 / 2, abs=TOL)
    assert mrr(RUN, QRELS, k=1) == 0.0
    assert average_precision(RUN, QRELS) == pytest.approx((1 / 2 + 2 / 3) / 3, abs=TOL)


def test_int_and_str_ids_are_the_same():
    run = {1: {10: 0.2, 9: 0.2, 3: 0.1}}
    qrels = {"1": {"10": 1, "3": 2}}
    assert ndcg_at_k(run, qrels, 10) == ndcg_at_k(to_trec_run(run), to_trec_qrels(qrels), 10)
    assert mrr(run, qrels) == pytest.approx(1 / 2)  # "9" ranks above "10" on the tie


def test_which_queries_count():
    run = {"q1": {"a": 1.0}, "q2": {"a": 1.0}, "q4": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"a": 0}, "q3": {"x": 1}}
    # default (trec_eval): queries in both; q2 has nothing relevant and scores 0
    assert mrr(run, qrels, per_query=True) == {"q1": 1.0, "q2": 0.0}
    assert mrr(run, qrels) == 0.5
    # complete (trec_eval -c, ir_measures): every judged query, q3 missing scores 0
    assert mrr(run, qrels, complete=True, per_query=True) == {"q1": 1.0, "q2": 0.0, "q3": 0.0}


def test_evaluate_matches_the_single_functions():
    out = evaluate(RUN, QRELS, ("ndcg@10", "recall@100", "precision@5", "mrr", "mrr@1", "map"))
    assert out == {
        "ndcg@10": ndcg_at_k(RUN, QRELS, 10),
        "recall@100": recall_at_k(RUN, QRELS, 100),
        "precision@5": precision_at_k(RUN, QRELS, 5),
        "mrr": mrr(RUN, QRELS),
        "mrr@1": mrr(RUN, QRELS, k=1),
        "map": average_precision(RUN, QRELS),
    }
    per = evaluate(RUN, QRELS, ["ndcg@3"], per_query=True)
    assert per == {"ndcg@3": ndcg_at_k(RUN, QRELS, 3, per_query=True)}


@pytest.mark.parametrize(
    "run, qrels, match",
    [
        ({}, QRELS, "run is empty"),
        ([("q1", "a", 1.0)], QRELS, "run must be a dict"),
        ({"q1": {"a": "high"}}, QRELS, "real number"),
        ({"q1": {"a": float("nan")}}, QRELS, "NaN"),
        ({"q1": {"a": True}}, QRELS, "real number"),
        ({"q1": ["a", "b"]}, QRELS, "must be a dict doc_id -> score"),
        (RUN, {}, "qrels must be a non-empty dict"),
        (RUN, {"q1": {"a": 1.5}}, "integer grade"),
        (RUN, {"q1": {"a": -1}}, "integer grade"),
        ({"zz": {"a": 1.0}}, QRELS, "share no qid"),
    ],
)
def test_bad_input_raises(run, qrels, match):
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(run, qrels, 10)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10", None])
def test_bad_k_raises(k):
    for fn in (ndcg_at_k, recall_at_k, precision_at_k):
        with pytest.raises(ValueError, match="positive int"):
            fn(RUN, QRELS, k)
    if k is not None:
        with pytest.raises(ValueError, match="positive int"):
            mrr(RUN, QRELS, k=k)


@pytest.mark.parametrize("name", ["ndcg", "recall", "ndcg@0", "map@10", "f1@10", "", 3])
def test_bad_metric_names_raise(name):
    with pytest.raises(ValueError):
        evaluate(RUN, QRELS, [name])
    with pytest.raises(ValueError, match="metrics is empty"):
        evaluate(RUN, QRELS, [])


def random_run_and_qrels(seed: int, n_queries: int = 40, n_docs: int = 300):
    """Runs with many score ties (scores rounded to 1 decimal), ids of mixed lengths
    ("9" vs "10" order), graded qrels with zeros, unretrieved relevant documents, queries
    with nothing relevant, queries only in the run and queries only in the qrels."""
    rng = np.random.default_rng(seed)
    run, qrels = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        docs = rng.choice(n_docs, size=int(rng.integers(1, 150)), replace=False)
        if q != n_queries - 1:  # the last query is judged but not in the run
            run[qid] = {str(d): float(np.round(rng.random(), 1)) for d in docs}
        judged = rng.choice(n_docs, size=int(rng.integers(1, 30)), replace=False)
        grades = rng.integers(0, 4, size=judged.size) if q % 7 else np.zeros(judged.size, dtype=int)
        qrels[qid] = {str(d): int(g) for d, g in zip(judged, grades)}
    run["only_in_run"] = {"1": 1.0}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pytrec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = random_run_and_qrels(seed)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank", "map", "P.10"})
    ref = evaluator.evaluate(run)
    ours = evaluate(run, qrels, ["ndcg@10", "recall@100", "mrr", "map", "precision@10"], per_query=True)
    names = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100", "mrr": "recip_rank", "map": "map",
             "precision@10": "P_10"}
    for ours_name, ref_name in names.items():
        assert set(ours[ours_name]) == set(ref)  # the same queries are evaluated
        for qid, value in ref.items():
            assert ours[ours_name][qid] == pytest.approx(value[ref_name], abs=TOL), (ours_name, qid)
        mean = sum(v[ref_name] for v in ref.values()) / len(ref)
        assert evaluate(run, qrels, [ours_name])[ours_name] == pytest.approx(mean, abs=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_ir_measures(seed):
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import AP, RR, R, nDCG

    run, qrels = random_run_and_qrels(seed)
    ref = ir_measures.calc_aggregate([nDCG @ 10, R @ 100, RR, AP], qrels, run)
    # ir_measures averages over every judged query, a missing one scoring 0: complete=True
    ours = evaluate(run, qrels, ["ndcg@10", "recall@100", "mrr", "mrr@10", "map"], complete=True)
    assert ours["ndcg@10"] == pytest.approx(ref[nDCG @ 10], abs=TOL)
    assert ours["recall@100"] == pytest.approx(ref[R @ 100], abs=TOL)
    assert ours["mrr"] == pytest.approx(ref[RR], abs=TOL)
    assert ours["map"] == pytest.approx(ref[AP], abs=TOL)
    # RR@10: ir_measures' provider for it (msmarco) does not break score ties by doc id
    # (and its pytrec_eval provider ignores the cutoff), so compare on a run without ties
    untied = {q: {d: s + 1e-6 * i for i, (d, s) in enumerate(docs.items())} for q, docs in run.items()}
    rr10 = ir_measures.calc_aggregate([RR @ 10], qrels, untied)[RR @ 10]
    assert mrr(untied, qrels, k=10, complete=True) == pytest.approx(rr10, abs=TOL)
    assert mrr(untied, qrels, k=10) != mrr(untied, qrels)  # the cutoff matters on this data
    # when every judged query is in the run, both conventions agree
    shared = {q: qrels[q] for q in run if q in qrels}
    ref2 = ir_measures.calc_aggregate([nDCG @ 10], shared, run)
    assert ndcg_at_k(run, shared, 10) == pytest.approx(ref2[nDCG @ 10], abs=TOL)


def test_trec_files_round_trip_and_match_pytrec_eval(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = random_run_and_qrels(3, n_queries=10)
    path = write_trec_run(run, tmp_path / "run.txt")
    assert read_trec_run(path) == to_trec_run(run)
    qrels_path = tmp_path / "qrels.txt"
    qrels_path.write_text("".join(f"{q}\t0\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    assert read_trec_qrels(qrels_path) == to_trec_qrels(qrels)
    with open(path) as f:
        parsed_run = pytrec_eval.parse_run(f)
    with open(qrels_path) as f:
        parsed_qrels = pytrec_eval.parse_qrel(f)
    ref = pytrec_eval.RelevanceEvaluator(parsed_qrels, {"ndcg_cut.10"}).evaluate(parsed_run)
    ours = ndcg_at_k(run, qrels, 10, per_query=True)
    for qid in ref:
        assert ours[qid] == pytest.approx(ref[qid]["ndcg_cut_10"], abs=TOL)
    (tmp_path / "bad.txt").write_text("q1 Q0 a 1\n")
    with pytest.raises(ValueError, match="expected 'qid Q0"):
        read_trec_run(tmp_path / "bad.txt")


def test_module_documents_its_trec_eval_names():
    for fn, name in [(ndcg_at_k, "ndcg_cut"), (recall_at_k, "recall."), (mrr, "recip_rank"),
                     (average_precision, "``map``"), (precision_at_k, "P.k")]:
        assert name in fn.__doc__, fn.__name__
    assert "ndcg@k" in metrics.METRIC_PATTERNS
