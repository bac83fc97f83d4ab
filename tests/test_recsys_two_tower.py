"""Tests of course_lib.recsys.two_tower: the logQ-corrected in-batch softmax, towers, baselines, recall."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from course_lib.ir import metrics  # noqa: E402
from course_lib.recsys import two_tower as tt  # noqa: E402


def _reference_loss(u, v, logq, temperature=1.0):
    """Hand-written log-softmax route, row by row in float64."""
    U, V, lq = (np.asarray(x.detach(), dtype=np.float64) for x in (u, v, logq))
    total = 0.0
    for i in range(len(U)):
        z = U[i] @ V.T / temperature - lq
        m = z.max()
        total += -(z[i] - m - np.log(np.exp(z - m).sum()))
    return total / len(U)


def _batch(B=6, d=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, d, generator=g, dtype=dtype), torch.randn(B, d, generator=g, dtype=dtype),
            torch.log(torch.rand(B, generator=g, dtype=dtype)))


def test_loss_equals_hand_written_log_softmax():
    u, v, lq = _batch()
    for T in (1.0, 0.3):
        got = float(tt.in_batch_softmax_loss(u, v, lq, temperature=T))
        assert got == pytest.approx(_reference_loss(u, v, lq, T), abs=1e-12)


def test_logq_zero_is_plain_in_batch_softmax():
    u, v, _ = _batch()
    plain = torch.nn.functional.cross_entropy(u @ v.T, torch.arange(len(u)))
    got = float(tt.in_batch_softmax_loss(u, v, torch.zeros(len(u), dtype=u.dtype)))
    assert got == pytest.approx(float(plain), abs=1e-12)


def test_correction_sign():
    """With all scores equal (u = 0) the logits are -log q: popular candidates are discounted,
    row i's loss is log q_i + logsumexp(-log q) (closed form), and a flipped sign differs."""
    B = 5
    u, v = torch.zeros(B, 3, dtype=torch.float64), torch.randn(B, 3, dtype=torch.float64)
    lq = torch.log(torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64))
    want = float((lq + torch.logsumexp(-lq, 0)).mean())
    assert float(tt.in_batch_softmax_loss(u, v, lq)) == pytest.approx(want, abs=1e-12)
    assert abs(float(tt.in_batch_softmax_loss(u, v, -lq)) - want) > 1e-3


def test_gradcheck_float64():
    u, v, lq = _batch(B=5, d=3)
    u.requires_grad_(True)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: tt.in_batch_softmax_loss(a, b, lq, temperature=0.5), (u, v))


def test_duplicates_masked_when_ids_given():
    u, v, lq = _batch(B=4)
    v = v.clone()
    v[2] = v[0]  # the same item twice
    ids = torch.tensor([7, 3, 7, 5])
    masked = float(tt.in_batch_softmax_loss(u, v, lq, item_ids=ids))
    # reference: row 0 ignores column 2, row 2 ignores column 0
    U, V, L = (np.asarray(x, dtype=np.float64) for x in (u, v, lq))
    total = 0.0
    for i in range(4):
        z = U[i] @ V.T - L
        for j in range(4):
            if j != i and ids[j] == ids[i]:
                z[j] = -np.inf
        total += -(z[i] - np.log(np.exp(z[np.isfinite(z)]).sum()))
    assert masked == pytest.approx(total / 4, abs=1e-12)
    assert masked < float(tt.in_batch_softmax_loss(u, v, lq))  # removing a negative lowers the loss


def test_loss_bad_input():
    u, v, lq = _batch()
    with pytest.raises(ValueError, match="same shape"):
        tt.in_batch_softmax_loss(u, v[:, :2], lq)
    with pytest.raises(ValueError, match=r"logq must have shape"):
        tt.in_batch_softmax_loss(u, v, lq[:3])
    with pytest.raises(ValueError, match="temperature"):
        tt.in_batch_softmax_loss(u, v, lq, temperature=0.0)
    with pytest.raises(ValueError, match="torch tensor"):
        tt.in_batch_softmax_loss(u.numpy(), v, lq)


def test_log_sampling_prob():
    lq = tt.log_sampling_prob(np.array([0, 0, 1, 3]), 5)
    np.testing.assert_allclose(lq, np.log([2 / 4, 1 / 4, 0.5 / 4, 1 / 4, 0.5 / 4]))
    with pytest.raises(ValueError):
        tt.log_sampling_prob(np.array([0, 9]), 5)
    with pytest.raises(ValueError):
        tt.log_sampling_prob(np.array([], dtype=np.int64), 5)


def test_training_lowers_loss_and_shapes():
    rng = np.random.default_rng(0)
    uf, itf = rng.standard_normal((50, 6)).astype(np.float32), rng.standard_normal((30, 5)).astype(np.float32)
    users, items = rng.integers(0, 50, 600), rng.integers(0, 30, 600)
    model = tt.TwoTower(uf, itf, dim=8, hidden=16)
    h = tt.train_two_tower(model, users, items, logq=tt.log_sampling_prob(items, 30), epochs=4, batch_size=64,
                           eval_fn=lambda m: 1)
    assert h.loss[-1] < h.loss[0] and h.evals == [1, 1, 1, 1]
    E = model.item_embeddings()
    assert E.shape == (30, 8)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert model.user_embeddings(np.array([0, 3])).shape == (2, 8)


def test_mf_svds_reconstructs_low_rank():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 15))
    Uf, Vf = tt.mf_svds(sp.csr_matrix(A), rank=3)
    np.testing.assert_allclose(Uf @ Vf.T, A, atol=1e-8)
    with pytest.raises(ValueError):
        tt.mf_svds(sp.csr_matrix(A), rank=15)


def test_interaction_matrix_and_popularity():
    X = tt.interaction_matrix(np.array([0, 0, 1, 0]), np.array([2, 2, 0, 1]), 2, 3)
    assert X.toarray().tolist() == [[0, 1, 1], [1, 0, 0]]
    np.testing.assert_array_equal(tt.popularity_scores(np.array([2, 2, 0]), 4), [1, 0, 2, 0])


def test_top_k_excluding_matches_brute_force():
    rng = np.random.default_rng(1)
    Uv, Iv = rng.standard_normal((7, 4)), rng.standard_normal((40, 4))
    ex = [rng.choice(40, 5, replace=False) for _ in range(7)]
    got = tt.top_k_excluding(Uv, Iv, 10, ex, chunk=3)
    for j in range(7):
        s = Uv[j] @ Iv.T
        s[ex[j]] = -np.inf
        assert got[j].tolist() == np.argsort(-s, kind="stable")[:10].tolist()
    with pytest.raises(ValueError):
        tt.top_k_excluding(Uv, Iv, 41, ex)
    with pytest.raises(ValueError):
        tt.top_k_excluding(Uv, Iv, 5, ex[:3])


def test_drop_excluded():
    I = np.array([[5, 1, 2, 3], [4, -1, -1, -1]])
    got = tt.drop_excluded(I, [np.array([1]), np.array([], dtype=np.int64)], 2)
    assert got.tolist() == [[5, 2], [4, -1]]


def test_recall_vs_sets_equals_ir_metrics():
    rng = np.random.default_rng(2)
    R = np.stack([rng.permutation(30)[:10] for _ in range(12)])
    rel = [rng.choice(30, rng.integers(1, 6), replace=False) for _ in range(12)]
    run = {str(j): {str(d): float(10 - p) for p, d in enumerate(R[j])} for j in range(12)}
    qrels = {str(j): {str(d): 1 for d in rel[j]} for j in range(12)}
    assert tt.recall_vs_sets(R, rel, 5) == pytest.approx(metrics.recall_at_k(run, qrels, 5), abs=1e-12)
    truth = np.stack([r[:4] for r in R])
    assert tt.overlap_at_k(R, truth) == 1.0
    with pytest.raises(ValueError):
        tt.recall_vs_sets(R, rel[:3], 5)
