"""Tests for course_lib.recsys.funnel (lesson 05.02): merge, sources, features, rankers, rules, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ndcg_score

from course_lib.ir import metrics
from course_lib.recsys import funnel as fn
from course_lib.recsys.sim import make_interactions, make_world


# --------------------------------------------------------------------------- merge_candidates


def test_merge_round_robin_order_and_origin():
    ids, origin = fn.merge_candidates({"a": [1, 2, 3], "b": [10, 20, 30]}, {"a": 2, "b": 3})
    assert ids.tolist() == [1, 10, 2, 20, 30]
    assert origin == ["a", "b", "a", "b", "b"]
    assert ids.dtype == np.int64


def test_merge_duplicates_counted_once_under_first_source_and_do_not_use_quota():
    ids, origin = fn.merge_candidates({"a": [5, 6], "b": [5, 7, 8]}, {"a": 2, "b": 2})
    assert ids.tolist() == [5, 6, 7, 8]          # b's 5 is skipped; b still takes two items (7, 8)
    assert origin == ["a", "a", "b", "b"]
    ids, _ = fn.merge_candidates({"a": [1, 1, 2]}, {"a": 5})  # a repeat within one source counts once
    assert ids.tolist() == [1, 2]


def test_merge_quota_larger_than_source_empty_sources_and_missing_quota():
    ids, origin = fn.merge_candidates({"a": [1], "b": [], "c": [9, 8]}, {"a": 10, "b": 3})
    assert ids.tolist() == [1] and origin == ["a"]          # c has no quota: contributes nothing
    ids, origin = fn.merge_candidates({}, {})
    assert ids.shape == (0,) and origin == []
    ids, _ = fn.merge_candidates({"a": np.array([3, 4], dtype=np.int32)}, {"a": 0})
    assert ids.size == 0


@pytest.mark.parametrize("quotas", [{"zzz": 1}, {"a": -1}, {"a": 1.5}, {"a": True}])
def test_merge_bad_quotas(quotas):
    with pytest.raises(ValueError):
        fn.merge_candidates({"a": [1, 2]}, quotas)


def test_merge_bad_sources():
    with pytest.raises(ValueError):
        fn.merge_candidates({"a": [[1, 2]]}, {"a": 1})
    with pytest.raises(ValueError):
        fn.merge_candidates({"a": [0.5]}, {"a": 1})
    with pytest.raises(ValueError):
        fn.merge_candidates([("a", [1])], {"a": 1})


def test_merge_deterministic_and_does_not_modify_inputs():
    rng = np.random.default_rng(0)
    sources = {n: rng.integers(0, 30, 15) for n in ("x", "y", "z")}
    copy = {n: s.copy() for n, s in sources.items()}
    quotas = {"x": 4, "y": 6, "z": 3}
    a = fn.merge_candidates(sources, quotas)
    b = fn.merge_candidates(sources, quotas)
    assert a[0].tolist() == b[0].tolist() and a[1] == b[1]
    assert all(np.array_equal(sources[n], copy[n]) for n in sources)
    assert len(set(a[0].tolist())) == len(a[0])
    for n, q in quotas.items():
        assert a[1].count(n) <= q


def test_split_quotas():
    assert fn.split_quotas(10, {"a": 0.5, "b": 0.3, "c": 0.2}) == {"a": 5, "b": 3, "c": 2}
    q = fn.split_quotas(7, {"a": 1, "b": 1, "c": 1})
    assert sum(q.values()) == 7 and max(q.values()) - min(q.values()) <= 1
    with pytest.raises(ValueError):
        fn.split_quotas(5, {"a": -1.0})


# --------------------------------------------------------------------------- sources and features


@pytest.fixture(scope="module")
def small_world():
    world = make_world(300, 120, cold_frac=0.0, seed=3)
    log = make_interactions(world, per_user=10, seed=3)
    data = fn.build_funnel_data(world, log, mf_dim=8, seed=3)
    return world, log, data


def test_covisitation_counts_and_interaction_matrix():
    X = fn.interaction_matrix(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 0, 1, 2, 2]), 3, 3)
    assert X.toarray().tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 1]]
    C = fn.covisitation(X).toarray()
    assert C.tolist() == [[0, 2, 1], [2, 0, 1], [1, 1, 0]]


def test_mf_embeddings_reconstruct_best_rank_k(small_world):
    _, _, data = small_world
    U, V = data.user_emb, data.item_emb
    s = np.linalg.svd(data.X.toarray(), compute_uv=False)
    err = np.linalg.norm(data.X.toarray() - U @ V.T) ** 2
    assert err == pytest.approx(np.sum(s[U.shape[1]:] ** 2), rel=1e-3)   # Eckart-Young


def test_candidate_sources_exclude_history_and_are_prefix_consistent(small_world):
    _, _, data = small_world
    for user in (0, 7, 42):
        short, deep = fn.candidate_sources(data, user, 10), fn.candidate_sources(data, user, 40)
        for name in ("ann", "covis", "pop"):
            assert not np.isin(short[name], data.history(user)).any()
            assert len(np.unique(short[name])) == len(short[name]) <= 10
            assert deep[name][: len(short[name])].tolist() == short[name].tolist()
        covis = np.asarray(data.X[user] @ data.C.toarray()).ravel()
        assert np.all(np.diff(covis[short["covis"]]) <= 0)
        assert data.popularity[short["pop"][0]] >= data.popularity[short["pop"][-1]]


def test_features_depend_on_the_pair_only(small_world):
    _, _, data = small_world
    users = np.array([1, 2])
    items = np.array([[3, 4, 5, 6], [7, 8, 9, 10]])
    F = fn.ranking_features(data, users, items, heavy=True)
    assert F.shape == (2, 4, len(fn.HEAVY_FEATURES))
    G = fn.ranking_features(data, users[::-1], items[::-1, ::-1], heavy=True)
    np.testing.assert_allclose(F, G[::-1, ::-1], rtol=1e-5, atol=1e-6)
    light = fn.ranking_features(data, users, items)
    np.testing.assert_allclose(light, F[..., : len(fn.LIGHT_FEATURES)], rtol=1e-6)
    assert F[0, 0, 0] == pytest.approx(float(data.user_emb[1] @ data.item_emb[3]), rel=1e-5)
    with pytest.raises(ValueError):
        fn.ranking_features(data, users, items[0])


# --------------------------------------------------------------------------- light ranker


def test_logistic_ranker_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000, 4)) * [1.0, 3.0, 0.5, 2.0] + [0, 1, -2, 0]
    y = (rng.random(2_000) < 1 / (1 + np.exp(-(X @ [1.0, -0.5, 2.0, 0.0] - 1)))).astype(float)
    ours = fn.LogisticRanker(l2=2.0).fit(X, y)
    Z = (X - ours.mean_) / ours.scale_
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], atol=1e-6)
    assert ours.intercept_ == pytest.approx(ref.intercept_[0], abs=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(Z)[:, 1], atol=1e-7)
    assert ours.n_iter_ < 20


def test_logistic_ranker_bad_input():
    with pytest.raises(ValueError):
        fn.LogisticRanker().fit(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        fn.LogisticRanker().decision_function(np.zeros((3, 2)))


# --------------------------------------------------------------------------- rules and metrics


def test_apply_rules_topic_cap_exclusion_and_ties():
    topics = np.array([0, 0, 0, 1, 1, 2])
    items = np.arange(6)
    scores = np.array([9.0, 8.0, 7.0, 6.0, 6.0, 1.0])
    assert fn.apply_rules(items, scores, topics, k=4, max_per_topic=2).tolist() == [0, 1, 3, 4]
    assert fn.apply_rules(items, scores, topics, k=4, max_per_topic=2, exclude=[0]).tolist() == [1, 2, 3, 4]
    assert fn.apply_rules(items, scores, topics, k=10, max_per_topic=1).tolist() == [0, 3, 5]   # hard rule: shorter slate
    with pytest.raises(ValueError):
        fn.apply_rules(items, scores[:3], topics)


def test_true_grades_bands():
    R = np.array([[0.9, 0.1, 0.5, 0.7, 0.3]])
    G = fn.true_grades(R, [np.array([0])], bands=(1, 2, 3))
    assert G.tolist() == [[0, 0, 2, 3, 1]]   # 0 consumed; then 0.7 -> 3, 0.5 -> 2, 0.3 -> 1, 0.1 -> 0


def test_ndcg_batch_matches_ir_metrics_and_sklearn():
    rng = np.random.default_rng(1)
    G = rng.integers(0, 4, (20, 50)).astype(np.int8)
    G[3] = 0  # a user with nothing relevant scores 0
    slates = np.array([rng.permutation(50)[:10] for _ in range(20)])
    slates[5, 7:] = -1  # a short slate
    ours = fn.ndcg_at_k_batch(slates, G, 10)
    qrels = {str(r): {str(i): int(g) for i, g in enumerate(G[r]) if g > 0} for r in range(20)}
    run = {str(r): {str(i): 10.0 - j for j, i in enumerate(slates[r]) if i >= 0} for r in range(20)}
    ref = metrics.ndcg_at_k(run, qrels, 10, per_query=True, complete=True)
    np.testing.assert_allclose(ours, [ref[str(r)] for r in range(20)], atol=1e-12)
    full = slates[[r for r in range(20) if r not in (3, 5)]]
    y_score = np.zeros((len(full), 50))
    np.put_along_axis(y_score, full, 10.0 - np.arange(10.0), axis=1)
    keep = [r for r in range(20) if r not in (3, 5)]
    assert ours[keep].mean() == pytest.approx(ndcg_score(G[keep], y_score, k=10), abs=1e-12)
    assert fn.pad_slates([np.array([1, 2]), np.arange(12)], 10).tolist()[0] == [1, 2] + [-1] * 8


# --------------------------------------------------------------------------- the funnel end to end


def test_funnel_recommend_and_exhaustive(small_world):
    world, log, data = small_world

    class ByLight:  # a stand-in heavy ranker: a fixed linear score on the heavy features
        def decision_function(self, F):
            return F[:, 0] + 0.5 * F[:, 5]

    rng = np.random.default_rng(0)
    users = np.arange(60)
    after = log.items_by_user(world.n_users, train=False)
    f = fn.Funnel(data, None, ByLight(), {"ann": 0.5, "covis": 0.3, "pop": 0.2}, k=5, max_per_topic=2)
    cands = [f.retrieve(int(u), 30)[0] for u in users]
    items, y = fn.training_slates(data, users, [after[u] for u in users], cands, 4, 6, rng)
    assert items.shape == (60, len(after[0]) + 10) and y[:, : len(after[0])].all() and not y[:, len(after[0]):].any()
    F = fn.ranking_features(data, users, items).reshape(-1, len(fn.LIGHT_FEATURES))
    f.light = fn.LogisticRanker().fit(F, y.ravel())
    for u in (0, 5):
        slate = f.recommend(u, 30, 10)
        assert 0 < len(slate) <= 5 and not np.isin(slate, data.history(u)).any()
        assert np.bincount(data.item_topic[slate]).max() <= 2
        ids, origin = f.retrieve(u, 30)
        assert np.isin(slate, ids).all() and len(ids) <= 30
        # with every item as a candidate and survivor, the funnel is the exhaustive ranking
        assert f.exhaustive(u).tolist() == f.rules_stage(u, np.arange(data.n_items),
                                                         f.heavy_stage(u, np.arange(data.n_items))).tolist()


def test_mlp_ranker_backprop_equals_torch_autograd_and_it_learns_a_nonlinear_rule():
    import torch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 3))
    y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(600) < 0.05)).astype(float)     # XOR-like: no linear model fits it
    mlp = fn.MLPRanker(hidden=(16, 8), epochs=60, batch_size=64, lr=1e-2, seed=1).fit(X, y)
    Z = (X - mlp.mean_) / mlp.scale_
    loss, grads = mlp.gradients(Z[:50], y[:50])
    tp = [torch.tensor(p, requires_grad=True) for p in mlp.params]
    h = torch.tensor(Z[:50])
    for k in range(len(tp) // 2):
        h = h @ tp[2 * k] + tp[2 * k + 1]
        if k < len(tp) // 2 - 1:
            h = torch.relu(h)
    s = h[:, 0]
    yt = torch.tensor(y[:50])
    t_loss = torch.nn.functional.binary_cross_entropy_with_logits(s, yt) + mlp.l2 / 2 * sum((W * W).sum() for W in tp[::2])
    t_loss.backward()
    assert loss == pytest.approx(t_loss.detach().item(), rel=1e-12)
    for g, p in zip(grads, tp):
        assert np.allclose(g, p.grad.numpy(), atol=1e-12)
    acc_mlp = np.mean((mlp.predict_proba(X) > 0.5) == y)
    acc_lr = np.mean((fn.LogisticRanker().fit(X, y).predict_proba(X) > 0.5) == y)
    assert acc_mlp > 0.85 and acc_mlp > acc_lr + 0.2
    assert mlp.decision_function(X.reshape(2, 300, 3)).shape == (2, 300)
    with pytest.raises(ValueError, match="not fitted"):
        fn.MLPRanker().decision_function(X)
