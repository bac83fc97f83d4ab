"""Tests for course_lib.ir.ltr: candidates, features, padding, and the lambda gradients
(equal to torch autograd's gradient of the pairwise loss) on small hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import config
from course_lib.ir import ltr, metrics


# --------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------


def test_top_ids_orders_by_score_then_smaller_id():
    scores = np.array([0.5, 2.0, 0.5, 0.0, 2.0, 1.0])
    assert ltr.top_ids(scores, 3).tolist() == [1, 4, 5]
    assert ltr.top_ids(scores, 5).tolist() == [1, 4, 5, 0, 2]  # the tie at 0.5 keeps the smaller id first
    assert ltr.top_ids(scores, 4).tolist() == [1, 4, 5, 0]     # a tie cut at k keeps the smaller id
    assert ltr.top_ids(scores, 100).tolist() == [1, 4, 5, 0, 2, 3]
    assert ltr.top_ids(scores, 100, positive_only=True).tolist() == [1, 4, 5, 0, 2]


def test_top_ids_agrees_with_a_full_sort_on_random_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 5, size=40).astype(float)
        k = int(rng.integers(1, 45))
        want = np.lexsort((np.arange(40), -scores))[:k]
        assert ltr.top_ids(scores, k).tolist() == want.tolist()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_top_ids_rejects_bad_k(bad):
    with pytest.raises(ValueError, match="k must be"):
        ltr.top_ids(np.ones(5), bad)


def test_top_ids_rejects_2d_scores():
    with pytest.raises(ValueError, match="1-D"):
        ltr.top_ids(np.ones((2, 3)), 1)


def test_candidate_union():
    assert ltr.candidate_union(np.array([5, 1, 3]), [3, 7]).tolist() == [1, 3, 5, 7]
    with pytest.raises(ValueError):
        ltr.candidate_union()


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------

DOCS = [
    {"id": 0, "source": "module", "title": "json", "text": "JSON encoder and decoder."},
    {"id": 1, "source": "module", "title": "json", "text": "Second passage of the module."},
    {"id": 2, "source": "function", "title": "json.dumps", "text": "Serialize obj to a JSON formatted str."},
    {"id": 3, "source": "function", "title": "json.loads", "text": "Deserialize s to a Python object."},
    {"id": 4, "source": "class", "title": "json.JSONDecoder", "text": "Simple JSON decoder."},
    {"id": 5, "source": "method", "title": "json.JSONDecoder.decode", "text": "Return the Python object."},
    {"id": 6, "source": "topic", "title": "assert", "text": "The assert statement."},
]


def _priors():
    return ltr.doc_priors(DOCS, np.array([5, 6, 9, 8, 4, 5, 4]))


def test_doc_priors():
    p = _priors()
    assert p.passage.tolist() == pytest.approx(np.log1p([0, 1, 0, 0, 0, 0, 0]).tolist())
    # members directly below: json has dumps, loads, JSONDecoder (3); JSONDecoder has decode (1)
    assert p.popularity.tolist() == pytest.approx(np.log1p([3, 3, 0, 0, 1, 0, 0]).tolist())
    assert p.module_size.tolist() == pytest.approx(np.log1p([6, 6, 6, 6, 6, 6, 1]).tolist())
    assert p.source.sum(axis=1).tolist() == [1] * 7
    assert p.source[5, ltr.SOURCES.index("method")] == 1
    assert p.title_terms[5] == ["json", "jsondecoder", "decode"]


def test_doc_priors_rejects_bad_input():
    with pytest.raises(ValueError, match="doc_len"):
        ltr.doc_priors(DOCS, np.ones(3))
    with pytest.raises(ValueError, match="unknown source"):
        ltr.doc_priors([{**DOCS[0], "source": "blog"}], np.ones(1))


def test_query_features_columns():
    p = _priors()
    n = len(DOCS)
    bm25 = np.array([1.0, 0.0, 4.0, 2.0, 0.0, 0.0, 0.0])
    cosine = np.linspace(0.1, 0.7, n)
    cand = np.array([0, 2, 3, 5])
    X = ltr.query_features("json.dumps", cand, bm25, bm25 / 2, cosine, p)
    assert X.shape == (4, len(ltr.FEATURES))
    col = {name: X[:, j] for j, name in enumerate(ltr.FEATURES)}
    assert col["bm25"].tolist() == [1.0, 4.0, 2.0, 0.0]
    assert col["bm25_rel"].max() == 1.0 and col["bm25_rel"][2] == 0.5
    assert col["cosine_gap"].max() == 0.0
    assert col["title_exact"].tolist() == [0, 1, 0, 0]
    assert col["title_overlap"].tolist() == [0.5, 1.0, 0.5, 0.5]
    assert col["query_terms"].tolist() == [math.log1p(2)] * 4
    # a bare name matches the end of the title
    Xb = ltr.query_features("decode", np.array([4, 5]), bm25, bm25, cosine, p)
    assert Xb[:, ltr.FEATURES.index("title_exact")].tolist() == [0, 1]


def test_query_features_rejects_bad_input():
    p = _priors()
    with pytest.raises(ValueError, match="one score per document"):
        ltr.query_features("json", np.array([0]), np.ones(3), np.ones(7), np.ones(7), p)
    with pytest.raises(ValueError, match="candidates"):
        ltr.query_features("json", np.array([], dtype=int), np.ones(7), np.ones(7), np.ones(7), p)


def test_grades_of():
    assert ltr.grades_of(np.array([3, 1, 2]), {2: 2, 3: 1}).tolist() == [1, 0, 2]


def test_standardizer():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    st = ltr.Standardizer.fit(X)
    Z = st(X)
    assert Z[:, 0].mean() == pytest.approx(0) and Z[:, 0].std() == pytest.approx(1)
    assert Z[:, 1].tolist() == [0, 0, 0]  # a constant column maps to 0, not NaN
    with pytest.raises(ValueError):
        ltr.Standardizer.fit(np.ones(3))


def test_pad_queries():
    X, y, mask = ltr.pad_queries([np.ones((2, 3)), 2 * np.ones((4, 3))], [np.array([1, 0]), np.array([0, 0, 2, 1])])
    assert X.shape == (2, 4, 3) and y.shape == mask.shape == (2, 4)
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    assert X[0, 2:].abs().sum() == 0 and y[0].tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="same number of columns"):
        ltr.pad_queries([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="grades"):
        ltr.pad_queries([np.ones((2, 3))], [np.array([1, 0, 0])])


# --------------------------------------------------------------------------
# RankNet / LambdaRank
# --------------------------------------------------------------------------


def _random_batch(seed: int, B: int = 6, M: int = 12):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, M, generator=g, dtype=torch.float64)
    grades = torch.randint(0, 3, (B, M), generator=g).to(torch.float64)
    mask = torch.rand(B, M, generator=g) > 0.25
    grades[0] = 0  # a query with nothing relevant: no pair, zero gradient
    grades[1, 3:] = 0
    grades[1, :3] = torch.tensor([2.0, 2.0, 1.0])  # ties in grade form no pair
    return scores, grades, mask


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_ranknet_lambdas_equal_autograd(seed, sigma):
    scores, grades, mask = _random_batch(seed)
    s = scores.clone().requires_grad_(True)
    ltr.ranknet_loss(s, grades, mask, sigma).backward()
    lam = ltr.lambda_gradients(scores, grades, mask, sigma, weighting="none")
    assert torch.allclose(lam, s.grad, atol=1e-12, rtol=0)
    assert lam[0].abs().sum() == 0
    assert lam[~mask].abs().sum() == 0  # padding receives nothing


@pytest.mark.parametrize("seed", range(5))
def test_lambdarank_lambdas_equal_autograd_of_weighted_loss(seed):
    scores, grades, mask = _random_batch(seed)
    s = scores.clone().requires_grad_(True)
    weights = ltr.delta_ndcg(scores, grades, mask)  # held constant, as LambdaRank does
    ltr.ranknet_loss(s, grades, mask, pair_weights=weights).backward()
    lam = ltr.lambda_gradients(scores, grades, mask)
    assert torch.allclose(lam, s.grad, atol=1e-12, rtol=0)
    # every pair pushes its two documents equally and oppositely: each query's lambdas sum to 0
    assert lam.sum(dim=1).abs().max() < 1e-12


def test_delta_ndcg_is_the_change_of_ndcg_when_swapping():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.2]], dtype=torch.float64)
    grades = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    mask = torch.ones_like(scores, dtype=torch.bool)
    full = ltr.delta_ndcg(scores, grades, mask)[0]
    base = float(ltr.mean_ndcg(scores, grades, mask))
    for i in range(5):
        for j in range(5):
            swapped = scores.clone()
            swapped[0, [i, j]] = swapped[0, [j, i]]
            after = float(ltr.mean_ndcg(swapped, grades, mask))
            assert abs(after - base) == pytest.approx(float(full[i, j]), abs=1e-12)
    rows = ltr.delta_ndcg(scores, grades, mask, rows=torch.tensor([[1, 3]]))
    assert torch.equal(rows[0], full[[1, 3]])


def test_mean_ndcg_matches_course_metrics():
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((4, 9))
    grades = rng.integers(0, 3, (4, 9))
    grades[:, 0] = 1
    got = float(ltr.mean_ndcg(torch.tensor(scores), torch.tensor(grades, dtype=torch.float64),
                              torch.ones(4, 9, dtype=torch.bool), k=5))
    run = {f"q{q}": {d: float(scores[q, d]) for d in range(9)} for q in range(4)}
    qrels = {f"q{q}": {d: int(grades[q, d]) for d in range(9)} for q in range(4)}
    assert got == pytest.approx(metrics.ndcg_at_k(run, qrels, 5), abs=1e-12)


def test_bad_batch_shapes_and_weighting():
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="n_queries, n_candidates"):
        ltr.lambda_gradients(s, torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="weighting"):
        ltr.lambda_gradients(s, s, torch.ones(2, 3, dtype=torch.bool), weighting="map")


def test_train_lambdarank_learns_a_linear_ranking():
    rng = np.random.default_rng(0)
    w_true = np.array([2.0, -1.0, 0.0])
    feats, grades = [], []
    for _ in range(60):
        x = rng.standard_normal((15, 3))
        y = np.digitize(x @ w_true, [1.0, 2.5])  # grades 0, 1, 2 from a linear utility
        feats.append(x)
        grades.append(y)
    X, y, mask = ltr.pad_queries(feats, grades)
    torch.manual_seed(0)
    model = ltr.make_scorer(3)
    with config.single_thread():  # tiny tensors: a second thread only adds synchronisation
        history = ltr.train_lambdarank(model, X, y, mask, epochs=30, lr=0.05, batch_queries=16, seed=0)
    assert history[-1] > 0.97 > history[0] - 0.2
    w = model.weight.detach().numpy().ravel()
    assert w[0] > 0 > w[1] and abs(w[2]) < 0.3 * w[0]


def test_make_scorer_shapes():
    assert ltr.make_scorer(5)(torch.zeros(2, 7, 5)).shape == (2, 7, 1)
    assert ltr.make_scorer(5, hidden=8)(torch.zeros(2, 7, 5)).shape == (2, 7, 1)


def test_to_run_cuts_at_depth_in_trec_eval_order():
    run = ltr.to_run(["q"], [np.array([4, 10, 9, 2])], [np.array([0.1, 0.5, 0.5, 0.9])], depth=3)
    assert list(run["q"]) == [2, 9, 10]  # the tie 9/10 is broken as trec_eval does: "9" > "10"
    assert ltr.to_run(["q"], [np.array([1, 2])], [np.array([1.0, 2.0])], depth=None) == {"q": {1: 1.0, 2: 2.0}}
    with pytest.raises(ValueError):
        ltr.to_run(["q"], [np.array([1, 2])], [np.array([1.0])])


def test_adam_first_step_moves_each_weight_by_lr_against_the_gradient_sign():
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    opt = ltr.Adam([w], lr=0.1)
    (w * torch.tensor([2.0, -0.5, 0.0])).sum().backward()
    opt.step()
    # after one step m_hat = g and sqrt(v_hat) = |g|: the move is lr * g / (|g| + eps)
    assert w.detach().tolist() == pytest.approx([0.9, -1.9, 3.0], abs=1e-6)
    opt.zero_grad()
    assert w.grad is None
    with pytest.raises(ValueError):
        ltr.Adam([w], lr=0)
