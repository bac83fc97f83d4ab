"""The chapter 05 simulator: deterministic, internally consistent, and its truth matches its samples."""

import numpy as np
import pytest

from course_lib.recsys.sim import examination_probs, make_interactions, make_sessions, make_world


@pytest.fixture(scope="module")
def world():
    return make_world(600, 400, seed=3)


def test_same_seed_same_world_and_logs(world):
    w2 = make_world(600, 400, seed=3)
    assert np.array_equal(world.user_vecs, w2.user_vecs) and np.array_equal(world.item_vecs, w2.item_vecs)
    a, b = make_interactions(world, 10, seed=1), make_interactions(w2, 10, seed=1)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.watch_s, b.watch_s)
    assert not np.array_equal(make_world(600, 400, seed=4).item_vecs, world.item_vecs)


def test_mean_relevance_is_the_base_rate(world):
    R = world.relevance_matrix(np.arange(world.n_users))
    assert R.mean() == pytest.approx(world.params["base_rate"], rel=0.1)
    assert np.allclose(world.relevance(np.array([5, 7]), np.array([11, 13])), R[[5, 7], [11, 13]])


def test_interactions_respect_the_cold_start_and_are_distinct(world):
    log = make_interactions(world, 10, test_frac=0.3, seed=0)
    assert len(log) == world.n_users * 10
    assert not world.is_cold[log.item[log.train]].any()
    assert world.is_cold[log.item[~log.train]].any()
    assert np.all(log.time[log.train] < 0.7) and np.all(log.time[~log.train] >= 0.7)
    per_user = log.item.reshape(world.n_users, 10)
    assert all(len(set(row)) == 10 for row in per_user.tolist())
    assert np.all((log.watch_s >= 0) & (log.watch_s <= world.duration_s[log.item] + 1e-9))
    by_user = log.items_by_user(world.n_users, train=True)
    assert sum(len(x) for x in by_user) == int(log.train.sum()) and set(by_user[4]) == set(per_user[4, :7])


def test_consumption_follows_the_affinity(world):
    """Items a user consumes have higher true affinity than random items, and popular items are consumed more."""
    log = make_interactions(world, 10, seed=0)
    s_logged = world.affinity(log.user, log.item).mean()
    s_random = world.affinity(log.user, np.random.default_rng(0).integers(0, world.n_items, len(log))).mean()
    assert s_logged > s_random + 1.0
    counts = np.bincount(log.item, minlength=world.n_items)
    top = np.argsort(-world.item_pop)[:40]
    assert counts[top].mean() > 2 * counts.mean()


def test_true_top_k_orders_by_affinity_and_excludes(world):
    top = world.true_top_k(np.arange(5), 7, exclude=[np.array([0, 1])] * 5)
    S = world.affinity_matrix(np.arange(5))
    for j in range(5):
        assert not set(top[j]) & {0, 1}
        assert np.all(np.diff(S[j, top[j]]) <= 0)
    cold_free = world.true_top_k(np.arange(5), 7, include_cold=False)
    assert not world.is_cold[cold_free].any()
    with pytest.raises(ValueError, match="exceeds"):
        world.true_top_k([0], world.n_items + 1)


def test_slate_feedback_follows_the_examination_model(world):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(world.n_users), 20)
    slates = np.tile(np.arange(5), (len(users), 1))  # same 5 items at positions 1..5
    fb = world.slate_feedback(users, slates, rng)
    assert np.allclose(fb["examined"].mean(axis=0), examination_probs(5), atol=0.01)
    assert fb["click"].mean() == pytest.approx(fb["p_click"].mean(), abs=0.005)
    assert not (fb["click"] & ~fb["examined"]).any() and np.all(fb["watch_s"][~fb["click"]] == 0)
    clicked = fb["click"]
    expected = world.expected_watch_s(users[:, None].repeat(5, 1)[clicked], slates[clicked]).mean()
    assert fb["watch_s"][clicked].mean() == pytest.approx(expected, rel=0.03)


def test_sessions_drift_between_topics(world):
    s = make_sessions(world, 400, 15, drift=0.0, seed=0)
    assert np.all(s.topics == s.topics[:, :1]) and np.array_equal(s.topics, world.item_topic[s.items])
    s2 = make_sessions(world, 400, 15, drift=0.5, seed=0)
    assert (s2.topics[:, 1:] != s2.topics[:, :-1]).mean() > 0.1
    assert not world.is_cold[s2.items].any()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="n_users"):
        make_world(0, 10)
    with pytest.raises(ValueError, match="base_rate"):
        make_world(10, 10, base_rate=1.5)
    w = make_world(20, 30, seed=0)
    with pytest.raises(ValueError, match="users must be integer ids"):
        w.relevance([20], [0])
    with pytest.raises(ValueError, match="items must be integer ids"):
        w.affinity([0], [0.5])
    with pytest.raises(ValueError, match="slates must be"):
        w.slate_feedback([0, 1], np.zeros((3, 2), int), np.random.default_rng(0))
    with pytest.raises(ValueError, match="per_user"):
        make_interactions(w, 31)
    with pytest.raises(ValueError, match="eta"):
        examination_probs(3, -1)
