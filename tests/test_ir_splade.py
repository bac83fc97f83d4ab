"""course_lib.ir.splade: pooling, the FLOPS regulariser, training on toy data, sparse search, bad input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.ir import splade  # noqa: E402


def _toy(seed=0, vocab=40, dim=8):
    rng = np.random.default_rng(seed)
    E = (rng.standard_normal((vocab, dim)) / np.sqrt(dim)).astype(np.float32)  # norms ~1, as MiniLM's
    return E, np.arange(vocab), np.arange(0, vocab, 2)  # outputs: even ids only


def test_weights_are_log1p_relu_of_tied_logits_at_init():
    E, ins, outs = _toy()
    model = splade.SpladeLite(E, ins, outs, n_candidates=4, rank=3, bias_init=-0.2)
    rows = np.arange(len(ins))
    w = model.token_weights(rows).detach().numpy()
    cand = model.candidates
    # B = 0 at init: logit = e_i . e_j + bias
    logits = np.einsum("nd,nmd->nm", E[ins], E[outs][cand]) - 0.2
    np.testing.assert_allclose(w, np.log1p(np.maximum(logits, 0)), rtol=1e-5, atol=1e-6)
    # each even token is among its own candidates
    for i in range(0, len(ins), 2):
        assert (outs[cand[i]] == ins[i]).any()


def test_max_pooling_by_hand():
    E, ins, outs = _toy(1)
    model = splade.SpladeLite(E, ins, outs, n_candidates=5, rank=2, bias_init=-0.3)
    sets = [np.array([0, 3, 7]), np.array([2]), np.array([5, 9, 11, 12])]
    X = model.encode(sets).detach().numpy()
    S = model.encode_sparse(sets).toarray()
    w = model.token_weights(np.arange(len(ins))).detach().numpy()
    want = np.zeros((3, len(outs)), dtype=np.float32)
    for t, ids in enumerate(sets):
        for i in ids:
            for c, v in zip(model.candidates[i], w[i]):
                want[t, c] = max(want[t, c], v)
    np.testing.assert_allclose(X, want, rtol=1e-6)
    np.testing.assert_allclose(S, want, rtol=1e-6)


def test_gradient_of_max_goes_to_the_winning_token_only():
    E, ins, outs = _toy(2)
    model = splade.SpladeLite(E, ins, outs, n_candidates=3, rank=2, bias_init=3.0)  # everything active
    X = model.encode([np.array([1, 4, 6])])
    X.sum().backward()
    assert model.bias.grad is not None and torch.all(model.bias.grad >= 0)
    # a term that no token of the text proposes gets no gradient
    proposed = set(model.candidates[[1, 4, 6]].ravel().tolist())
    for j in range(len(outs)):
        if j not in proposed:
            assert model.bias.grad[j] == 0


def test_flops_regulariser():
    X = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert splade.flops(X).item() == pytest.approx(2.0**2 + 0 + 1.0**2)


def test_training_lowers_the_loss_on_toy_pairs():
    E, ins, outs = _toy(3, vocab=60, dim=16)
    rng = np.random.default_rng(0)
    docs = [np.unique(rng.choice(outs, 6, replace=False)) for _ in range(40)]
    queries = [d[:2] for d in docs]  # a query is two of its document's terms
    model = splade.SpladeLite(E, ins, outs, n_candidates=4, rank=4)
    hist = splade.train(model, queries, docs, steps=60, batch_size=16, lr=5e-2, seed=0)
    first, last = np.mean([h.contrastive for h in hist[:5]]), np.mean([h.contrastive for h in hist[-5:]])
    assert last < 0.5 * first
    assert all(h.loss == pytest.approx(h.contrastive + h.flops, rel=1e-5) for h in hist)


def test_sparse_search_matches_dense_argsort():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    D = sp.random(50, 30, density=0.2, random_state=1, format="csr")
    Q = sp.random(4, 30, density=0.3, random_state=2, format="csr")
    scores, ids = splade.sparse_search(Q, D, 10)
    S = (Q @ D.T).toarray()
    for row in range(4):
        hit = np.flatnonzero(S[row] > 0)
        want = hit[np.lexsort((hit, -S[row, hit]))][:10]
        assert ids[row, : len(want)].tolist() == want.tolist()
        assert np.all(ids[row, len(want):] == -1)
    with pytest.raises(ValueError, match="terms"):
        splade.sparse_search(Q[:, :10], D, 3)


def test_bad_input():
    E, ins, outs = _toy()
    with pytest.raises(ValueError, match="2-D"):
        splade.SpladeLite(E[0], ins, outs)
    with pytest.raises(ValueError, match="output_ids"):
        splade.SpladeLite(E, ins, np.array([999]))
    with pytest.raises(ValueError, match="rank"):
        splade.SpladeLite(E, ins, outs, rank=0)
    with pytest.raises(ValueError):
        splade.SpladeLite(E, ins, outs, n_candidates=len(outs) + 1)
    model = splade.SpladeLite(E, ins[:10], outs)
    with pytest.raises(ValueError, match="not in input_ids"):
        model.encode([np.array([30])])
    with pytest.raises(ValueError, match="empty"):
        model.encode([])
    with pytest.raises(ValueError, match="pairs"):
        splade.train(model, [np.array([1])], [np.array([2])], steps=1)
    with pytest.raises(ValueError, match="steps"):
        splade.train(model, [np.array([1])] * 3, [np.array([2])] * 3, steps=0)


@pytest.mark.slow
def test_real_wordpieces():
    tokenizer, E = splade.load_wordpiece_embeddings()
    assert E.shape == (30522, 384) and E.dtype == np.float32
    sets = splade.wordpiece_sets(tokenizer, ["json.dumps serialises", "x " * 400])
    assert tokenizer.id_to_token(int(sets[0][0])) in {"json", "j", ".", "dump", "##s", "##ial", "serial", "##ises"} or len(sets[0]) > 2
    assert len(sets[1]) == 1  # one distinct piece, truncated at 256
    with pytest.raises(ValueError, match="list of str"):
        splade.wordpiece_sets(tokenizer, "one string")
