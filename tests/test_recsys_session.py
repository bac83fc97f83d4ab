"""Tests for course_lib.recsys.session: bag-of-recent states, GRU, training and next-item metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.ir import metrics
from course_lib.recsys.session import SessionModel, next_item_metrics, train_session_model
from course_lib.recsys.sim import make_sessions, make_world


def test_bag_state_is_mean_of_last_m():
    torch.manual_seed(0)
    model = SessionModel(20, dim=4, kind="bag", m=3)
    items = torch.tensor([[1, 2, 3, 4, 5], [6, 6, 7, 8, 9]])
    H = model.states(items)
    E = model.emb(items)
    for t in range(5):
        want = E[:, max(0, t - 2): t + 1].mean(dim=1)
        assert torch.allclose(H[:, t], want, atol=1e-6)


def test_shapes_and_bad_input():
    model = SessionModel(30, dim=8, kind="gru")
    assert model(torch.zeros((2, 7), dtype=torch.long)).shape == (2, 7, 30)
    with pytest.raises(ValueError):
        SessionModel(30, kind="lstm")
    with pytest.raises(ValueError):
        next_item_metrics(model, np.zeros((3, 1), np.int64))
    with pytest.raises(ValueError):
        next_item_metrics(model, np.zeros((3, 5), np.int64), min_prefix=5)


def test_metrics_agree_with_ir_metrics():
    torch.manual_seed(1)
    model = SessionModel(40, dim=8, kind="gru")
    items = np.random.default_rng(0).integers(0, 40, (6, 5))
    got = next_item_metrics(model, items, k=10, min_prefix=2)
    with torch.no_grad():
        logits = model(torch.as_tensor(items[:, :-1])).numpy()
    run, qrels = {}, {}
    for b in range(6):
        for t in range(1, 4):
            q = f"{b}-{t}"
            run[q] = {str(i): float(logits[b, t, i]) for i in range(40)}
            qrels[q] = {str(items[b, t + 1]): 1}
    assert got["n"] == 18
    assert got["recall"] == pytest.approx(metrics.recall_at_k(run, qrels, k=10), abs=1e-6)
    assert got["mrr"] == pytest.approx(metrics.mrr(run, qrels), abs=1e-6)


def test_training_learns_sessions():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    world = make_world(200, 100, aff_scale=4.0, seed=0)
    sess = make_sessions(world, 200, 8, drift=0.05, seed=0)
    model = SessionModel(100, dim=16, kind="gru")
    before = next_item_metrics(model, sess.items, k=10)["recall"]
    losses = train_session_model(model, sess.items, epochs=3, lr=0.02, seed=0)
    assert losses[-1] < losses[0]
    assert next_item_metrics(model, sess.items, k=10)["recall"] > before + 0.1
