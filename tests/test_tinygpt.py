"""course_lib.nn.tinygpt: shapes, causality, parameter count, loss, generation, bad config."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from course_lib.nn.tinygpt import GPTConfig, TinyGPT  # noqa: E402


def small(**kw) -> GPTConfig:
    return GPTConfig(**({"block_size": 16, "vocab_size": 29, "n_layer": 2, "n_head": 2, "n_embd": 16} | kw))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyGPT(small()).eval()


def test_shapes(model):
    idx = torch.randint(0, 29, (3, 11))
    logits, loss = model(idx)
    assert logits.shape == (3, 11, 29) and loss is None
    logits, loss = model(idx, idx)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_initial_loss_is_near_log_vocab(model):
    # small random init: logits are near zero, so the loss on random targets is near uniform guessing
    idx, targets = torch.randint(0, 29, (2, 8, 16))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(29)) < 0.1


def test_causality(model):
    idx = torch.randint(0, 29, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % 29  # change the future only
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_gradient_of_early_logits_ignores_later_tokens(model):
    x = model.transformer.wte(torch.randint(0, 29, (1, 10))).detach().requires_grad_(True)
    h = x + model.transformer.wpe(torch.arange(10))
    for block in model.transformer.h:
        h = block(h)
    h[0, 4].sum().backward()
    assert x.grad[0, 5:].abs().max() == 0 and x.grad[0, :5].abs().max() > 0


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"bias": False}, {"n_ffn": 24, "tie_weights": False}])
def test_param_count(kw):
    cfg = small(**kw)
    model = TinyGPT(cfg)
    L, d, V, T, f = cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_ffn
    b = 1 if cfg.bias else 0
    want = V * d + T * d + L * (4 * d * d + 2 * d * f + b * (4 * d + f + d)) + (2 * L + 1) * d * (1 + b)
    want += 0 if cfg.tie_weights else V * d
    assert model.num_params() == sum(p.numel() for p in model.parameters()) == want


def test_tied_weights_share_storage():
    tied, untied = TinyGPT(small()), TinyGPT(small(tie_weights=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_one_adam_step_lowers_the_loss():
    torch.manual_seed(0)
    model = TinyGPT(small())
    idx = torch.randint(0, 29, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_generate(model):
    torch.manual_seed(0)
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), 20, temperature=0)
    assert out.shape == (2, 21) and out.dtype == torch.long  # longer than block_size: the context is cropped
    again = model.generate(torch.zeros((2, 1), dtype=torch.long), 20, temperature=0)
    assert torch.equal(out, again)  # greedy is deterministic
    sampled = model.generate(torch.zeros((1, 3), dtype=torch.long), 5, temperature=1.0, top_k=3)
    assert sampled.shape == (1, 8) and int(sampled.max()) < 29


@pytest.mark.parametrize("kw, match", [
    ({"n_embd": 15}, "multiple of n_head"),
    ({"n_layer": 0}, "n_layer"),
    ({"vocab_size": 2.5}, "vocab_size"),
    ({"n_ffn": 0}, "n_ffn"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        small(**kw)


def test_bad_input(model):
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros((1, 17), dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(5, dtype=torch.long))
