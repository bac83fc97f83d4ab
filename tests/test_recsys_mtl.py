"""Tests of course_lib.recsys.mtl: the MMoE-paper generator, the models, PCGrad, uncertainty weighting,
the training loop and the negative-transfer detector."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.recsys import mtl


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread is fastest, and does not fight other jobs for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- generator


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.3, 0.9, 1.0])
def test_weight_vectors_have_cosine_rho_and_norm_c(rho: float) -> None:
    t = mtl.make_mtl_tasks(10, rho, np.random.default_rng(0), d=30, c=2.0)
    n1, n2 = np.linalg.norm(t.w, axis=1)
    assert n1 == pytest.approx(2.0, abs=1e-12) and n2 == pytest.approx(2.0, abs=1e-12)
    assert t.w[0] @ t.w[1] / (n1 * n2) == pytest.approx(rho, abs=1e-12)
    assert t.X.shape == (10, 30) and t.Y.shape == (10, 2) and t.X.dtype == np.float32


def test_labels_follow_the_formula() -> None:
    t = mtl.make_mtl_tasks(50, 0.4, np.random.default_rng(1), d=8, noise_std=0.0)
    X = t.X.astype(np.float64)
    for i in range(2):
        z = X @ t.w[i]
        y = z + sum(np.sin(a * z + b) for a, b in zip(t.alpha, t.beta))
        np.testing.assert_allclose(t.Y[:, i], y, rtol=1e-5, atol=1e-5)


def test_same_seed_same_task_one_for_every_rho() -> None:
    a = mtl.make_mtl_tasks(100, 0.0, np.random.default_rng(3), d=10)
    b = mtl.make_mtl_tasks(100, 0.8, np.random.default_rng(3), d=10)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y[:, 0], b.Y[:, 0])
    assert not np.allclose(a.Y[:, 1], b.Y[:, 1])


def test_label_correlation_closed_form_matches_measurement() -> None:
    for rho in (0.0, 0.5, 0.8):
        t = mtl.make_mtl_tasks(100_000, rho, np.random.default_rng(5), d=10)
        measured = np.corrcoef(t.Y.T)[0, 1]
        se = (1 - measured**2) / math.sqrt(len(t.Y))
        assert abs(measured - mtl.label_correlation(t)) < 4 * se + 1e-3
    # nonlinearity: strictly below rho inside (0, 1); 1 at rho = 1 without noise
    assert mtl.label_correlation(t, rho=0.5) < 0.5
    t0 = mtl.make_mtl_tasks(10, 1.0, np.random.default_rng(5), d=10, noise_std=0.0)
    assert mtl.label_correlation(t0) == pytest.approx(1.0, abs=1e-9)


def test_label_correlation_linear_case_is_rho() -> None:
    t = mtl.make_mtl_tasks(10, 0.37, np.random.default_rng(0), d=5, m=0, noise_std=0.0)
    assert mtl.label_correlation(t) == pytest.approx(0.37, abs=1e-12)


BAD_INPUTS = [dict(n=0, rho=0.5), dict(n=10, rho=1.5), dict(n=10, rho=0.5, d=1), dict(n=10, rho=0.5, noise_std=-1.0)]


@pytest.mark.parametrize("kw", BAD_INPUTS)
def test_generator_rejects_bad_input(kw: dict) -> None:
    kw = dict(kw)
    n, rho = kw.pop("n"), kw.pop("rho")
    with pytest.raises(ValueError):
        mtl.make_mtl_tasks(n, rho, np.random.default_rng(0), **kw)


def test_split() -> None:
    t = mtl.make_mtl_tasks(10, 0.5, np.random.default_rng(0), d=4)
    (a, b), (c, d) = t.split(7)
    assert a.shape == (7, 4) and b.shape == (7, 2) and c.shape == (3, 4) and d.shape == (3, 2)
    with pytest.raises(ValueError):
        t.split(10)


# --------------------------------------------------------------------------- models


def test_model_shapes_and_gates() -> None:
    x = torch.randn(7, 12)
    assert mtl.SharedBottom(12)(x).shape == (7, 2)
    mm = mtl.MMoE(12, n_experts=3)
    assert mm(x).shape == (7, 2)
    g = mm.gates(x)
    assert g.shape == (2, 7, 3)
    torch.testing.assert_close(g.sum(dim=2), torch.ones(2, 7))
    assert mtl.SingleTask(12, n_tasks=3)(x).shape == (7, 3)


def test_single_task_networks_are_independent() -> None:
    torch.manual_seed(0)
    m = mtl.SingleTask(6, n_tasks=2)
    x = torch.randn(5, 6)
    grads = torch.autograd.grad(m(x)[:, 0].sum(), list(m.parameters()))
    for g in grads:
        assert torch.all(g[1] == 0) and torch.any(g[0] != 0)


# --------------------------------------------------------------------------- PCGrad and the cosine


def test_pcgrad_worked_example_closed_form() -> None:
    out = mtl.pcgrad(np.array([[1.0, 0.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.0, 1.0]], atol=1e-15)


def test_pcgrad_no_conflict_unchanged() -> None:
    g = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]])
    np.testing.assert_array_equal(mtl.pcgrad(g), g)


def test_pcgrad_two_tasks_uses_original_gradients_and_removes_conflict() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = rng.standard_normal((2, 6))
        out = mtl.pcgrad(g)
        if g[0] @ g[1] < 0:
            assert out[0] @ g[1] == pytest.approx(0.0, abs=1e-12)
            assert out[1] @ g[0] == pytest.approx(0.0, abs=1e-12)
            expected1 = g[1] - (g[0] @ g[1]) / (g[0] @ g[0]) * g[0]  # against the ORIGINAL g1
            np.testing.assert_allclose(out[1], expected1, atol=1e-12)
            upd = out.sum(axis=0)
            assert upd @ g[0] >= -1e-12 and upd @ g[1] >= -1e-12
        else:
            np.testing.assert_array_equal(out, g)


def test_pcgrad_zero_gradient_and_torch_input() -> None:
    g = np.array([[0.0, 0.0], [1.0, -1.0]])
    np.testing.assert_array_equal(mtl.pcgrad(g), g)
    t = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    out = mtl.pcgrad(t)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))


def test_pcgrad_many_tasks_order_and_rejects_bad_shape() -> None:
    rng = np.random.default_rng(1)
    g = rng.standard_normal((4, 5))
    a, b = mtl.pcgrad(g, np.random.default_rng(0)), mtl.pcgrad(g, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)  # seeded order: reproducible
    with pytest.raises(ValueError):
        mtl.pcgrad(np.ones(3))


def test_grad_cosine() -> None:
    assert mtl.grad_cosine([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert mtl.grad_cosine([1.0, 1.0], [-2.0, -2.0]) == pytest.approx(-1.0)
    assert mtl.grad_cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        mtl.grad_cosine([1.0], [1.0, 2.0])


# --------------------------------------------------------------------------- uncertainty weighting and training


def test_uncertainty_weights_formula_and_optimum() -> None:
    uw = mtl.UncertaintyWeights(2)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([math.log(0.5), 0.0]))
    out = uw(torch.tensor([2.0, 3.0]))
    # 1/(2 sigma^2) L + log sigma
    torch.testing.assert_close(out, torch.tensor([2.0 / (2 * 0.5) + 0.5 * math.log(0.5), 1.5]))
    # the optimum of L/(2 s2) + log(s2)/2 over s2 is s2 = L
    L = torch.tensor([0.3, 4.0])
    opt = torch.optim.Adam(uw.parameters(), lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        uw(L).sum().backward()
        opt.step()
    np.testing.assert_allclose(uw.sigma2, [0.3, 4.0], rtol=1e-3)
    with pytest.raises(ValueError):
        uw(torch.ones(3))


def test_train_mtl_learns_and_records() -> None:
    t = mtl.make_mtl_tasks(2_000, 0.5, np.random.default_rng(0), d=8, noise_std=(0.1, 1.0))
    (Xtr, Ytr), (Xva, Yva) = t.split(1_500)
    torch.manual_seed(0)
    model = mtl.SharedBottom(8)
    before = mtl.task_errors(model, Xva, Yva).mean()
    h = mtl.train_mtl(model, Xtr, Ytr, steps=120, seed=0, weighting="uncertainty", use_pcgrad=True,
                      monitor=True, monitor_every=10)
    assert mtl.task_errors(model, Xva, Yva).mean() < 0.5 * before
    assert len(h.loss) == 120 and len(h.cosine) == 12 and len(h.sigma2) == 120
    assert h.sigma2[-1][1] > 1.5 * h.sigma2[-1][0]  # the noisy task gets the larger variance
    with pytest.raises(ValueError):
        mtl.train_mtl(model, Xtr, Ytr, steps=1, weighting="grid")
    with pytest.raises(ValueError):
        mtl.train_mtl(model, Xtr, Ytr[:10], steps=1)


def test_pcgrad_on_autograd_gradients_matches_hand_projection() -> None:
    """Per-task gradients from separate backward passes, projected by hand, against the helper."""
    t = mtl.make_mtl_tasks(300, 0.0, np.random.default_rng(2), d=6)
    torch.manual_seed(0)
    model = mtl.SharedBottom(6)
    X, Y = torch.as_tensor(t.X), torch.as_tensor(t.Y)
    params = list(model.parameters())
    G = []
    for k in range(2):
        model.zero_grad()
        ((model(X)[:, k] - Y[:, k]) ** 2).mean().backward()
        G.append(torch.cat([p.grad.reshape(-1) for p in params]).double())
    g1, g2 = G
    d = float(g1 @ g2)
    want = (g1 - (d / float(g2 @ g2)) * g2 if d < 0 else g1) + (g2 - (d / float(g1 @ g1)) * g1 if d < 0 else g2)
    got = mtl.pcgrad(torch.stack(G)).sum(dim=0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- negative transfer


def test_negative_transfer_detector() -> None:
    rng = np.random.default_rng(0)
    base = rng.exponential(1.0, 3_000)
    worse = base * 1.3 + rng.exponential(0.05, 3_000)
    t = mtl.negative_transfer(worse, base, rng=np.random.default_rng(1))
    assert t.negative and t.ci_low <= t.gap <= t.ci_high and t.gap > 0.25
    same = mtl.negative_transfer(base, base)
    assert not same.negative and same.gap == 0.0
    better = mtl.negative_transfer(base * 0.9, base)
    assert not better.negative and better.ci_high < 0
    slightly = mtl.negative_transfer(base * 1.01, base, margin=0.02)
    assert not slightly.negative  # a 1 % gap is inside a 2 % margin
    with pytest.raises(ValueError):
        mtl.negative_transfer(base, base[:10])
    with pytest.raises(ValueError):
        mtl.negative_transfer(base, base, level=1.5)


def test_train_mtl_steps_along_the_projected_sum() -> None:
    """Adam's first step is -lr * g / (|g| + eps) per coordinate: its signs reveal which g the loop used."""
    t = mtl.make_mtl_tasks(400, -0.9, np.random.default_rng(3), d=6)  # strongly conflicting tasks
    torch.manual_seed(1)
    model = mtl.SharedBottom(6)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 400, (128,), generator=gen)  # the batch train_mtl(seed=0) draws first
    X, Y = torch.as_tensor(t.X)[idx], torch.as_tensor(t.Y)[idx]
    G = []
    for k in range(2):
        model.zero_grad()
        ((model(X)[:, k] - Y[:, k]) ** 2).mean().backward()
        G.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    projected = mtl.pcgrad(torch.stack(G)).sum(dim=0)
    plain = G[0] + G[1]
    mtl.train_mtl(model, t.X, t.Y, steps=1, batch=128, lr=1e-3, seed=0, use_pcgrad=True)
    delta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double() - before.double()
    big = projected.abs() > 1e-5
    assert torch.all(torch.sign(delta[big]) == -torch.sign(projected[big]))
    assert float(G[0] @ G[1]) < 0 and not torch.allclose(projected, plain)  # the projection was active
