"""Unit tests for course_lib.nn.fx_passes: every pass keeps the outputs, and BN folding matches torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from course_lib.nn import fx_passes as fp

ATOL = 1e-5  # float32 outputs of order 1: folding reorders a few roundings


@pytest.fixture(scope="module")
def model_and_input():
    model = fp.make_demo_model(d=16, hidden=32, seed=0)
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    return model, x


def _names(gm: fx.GraphModule) -> list[str]:
    return [n.name for n in gm.graph.nodes]


def test_node_table_and_op_counts(model_and_input):
    model, _ = model_and_input
    gm = fx.symbolic_trace(model)
    rows = fp.node_table(gm)
    assert [r["name"] for r in rows] == _names(gm)
    assert rows[0]["op"] == "placeholder" and rows[-1]["op"] == "output"
    counts = fp.op_counts(gm)
    assert counts["Linear"] == 3 and counts["BatchNorm1d"] == 1 and counts["sigmoid"] == 1
    assert sum(counts.values()) == sum(1 for n in gm.graph.nodes if n.op.startswith("call_"))


def test_dce_removes_exactly_the_dead_branch_like_torch(model_and_input):
    model, x = model_and_input
    gm = fx.symbolic_trace(model)
    before = _names(gm)
    out, removed = fp.eliminate_dead_code(gm)
    assert removed == ["aux", "tanh"]
    assert _names(gm) == before, "the input GraphModule must not change"
    ref = fx.symbolic_trace(model)
    ref.graph.eliminate_dead_code()
    assert set(before) - set(_names(ref)) == set(removed)
    assert not hasattr(out, "aux"), "the unused submodule is deleted"
    torch.testing.assert_close(out(x), model(x), rtol=0, atol=0)


class _SideEffects(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        self.bn(x)            # dead, but updates running stats in training mode
        y = x * 2
        y.add_(1)             # in place: no user, must stay
        unused = x.relu()     # noqa: F841 - really dead
        return y


def test_dce_keeps_in_place_ops_and_training_bn():
    m = _SideEffects().train()
    _, removed = fp.eliminate_dead_code(fx.symbolic_trace(m))
    assert removed == ["relu"]
    _, removed_eval = fp.eliminate_dead_code(fx.symbolic_trace(m.eval()))
    assert removed_eval == ["bn", "relu"]


def test_fold_constants(model_and_input):
    model, x = model_and_input
    gm, folded = fp.fold_constants(fp.eliminate_dead_code(fx.symbolic_trace(model))[0])
    assert folded == ["exp", "add"]
    assert "exp" not in _names(gm) and "log_scale" not in _names(gm)
    torch.testing.assert_close(gm._folded_0, torch.exp(model.log_scale.detach()) + 1.0)
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


class _RandomConst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x + torch.rand_like(self.w) * 0 + self.w * 2


def test_fold_constants_never_folds_random_ops():
    gm, folded = fp.fold_constants(fx.symbolic_trace(_RandomConst()))
    assert "rand_like" not in folded and "mul_1" in folded
    assert "rand_like" in _names(gm)


@pytest.mark.parametrize("bias", [True, False])
def test_fold_bn_into_linear_matches_torch(bias):
    torch.manual_seed(0)
    lin = nn.Linear(7, 5, bias=bias)
    bn = nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    bn.eval()
    w_before = lin.weight.detach().clone()
    ours = fp.fold_bn_into_linear(lin, bn)
    theirs = fuse_linear_bn_eval(lin.eval(), bn)
    assert isinstance(ours, nn.Linear) and ours is not lin and ours.bias is not None
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.bias, theirs.bias, rtol=0, atol=1e-6)
    x = torch.randn(9, 7)
    torch.testing.assert_close(ours(x), bn(lin(x)), rtol=1e-5, atol=1e-5)
    assert torch.equal(lin.weight, w_before)


def test_fold_bn_without_affine():
    lin, bn = nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False)
    with torch.no_grad():
        bn.running_var.fill_(4.0)
        bn.running_mean.fill_(1.0)
    bn.eval()
    x = torch.randn(5, 3)
    torch.testing.assert_close(fp.fold_bn_into_linear(lin, bn)(x), bn(lin(x)), rtol=1e-5, atol=1e-6)


def test_fold_bn_into_linear_rejects_bad_input():
    lin = nn.Linear(3, 4)
    with pytest.raises(ValueError, match="training"):
        fp.fold_bn_into_linear(lin, nn.BatchNorm1d(4).train())
    with pytest.raises(ValueError, match="num_features"):
        fp.fold_bn_into_linear(lin, nn.BatchNorm1d(5).eval())
    with pytest.raises(ValueError, match="running statistics"):
        fp.fold_bn_into_linear(lin, nn.BatchNorm1d(4, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="Linear"):
        fp.fold_bn_into_linear(nn.Conv1d(3, 4, 1), nn.BatchNorm1d(4).eval())
    with pytest.raises(ValueError, match="BatchNorm"):
        fp.fold_bn_into_linear(lin, nn.LayerNorm(4))


def test_fold_linear_bn_pass(model_and_input):
    model, x = model_and_input
    gm, pairs = fp.fold_linear_bn(fx.symbolic_trace(model), x)
    assert pairs == [("fc1", "bn")]
    assert fp.op_counts(gm)["BatchNorm1d"] == 0
    torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=ATOL)


class _LinearBN3d(nn.Module):
    """Linear over the last axis of (B, C, L), BatchNorm1d over axis 1 (C == L): not foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(6, 6), nn.BatchNorm1d(6)

    def forward(self, x):
        return self.bn(self.fc(x))


def test_fold_linear_bn_refuses_3d_and_shared_outputs():
    m = _LinearBN3d().eval()
    with torch.no_grad():
        m.bn.running_mean.normal_()
    x = torch.randn(2, 6, 6)
    gm, pairs = fp.fold_linear_bn(fx.symbolic_trace(m), x)
    assert pairs == []
    torch.testing.assert_close(gm(x), m(x))

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.bn = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x):
            y = self.fc(x)
            return self.bn(y) + y

    s = Shared().eval()
    assert fp.fold_linear_bn(fx.symbolic_trace(s), torch.randn(3, 4))[1] == []


def test_fuse_elementwise(model_and_input):
    model, x = model_and_input
    gm = fp.fold_constants(fp.eliminate_dead_code(fx.symbolic_trace(model))[0])[0]
    fused, groups = fp.fuse_elementwise(gm)
    assert groups == [["add_1", "mul", "sigmoid", "mul_1"]]
    assert fp.op_counts(fused)["fused(add+mul+sigmoid+mul)"] == 1
    assert "torch.sigmoid" in fused.fused_0.code
    torch.testing.assert_close(fused(x), model(x), rtol=0, atol=0)


class _Diamond(nn.Module):
    """``a`` feeds both an elementwise op and a Linear: it must not be fused (the Linear needs it)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        a = x + 1
        b = a * 2
        return torch.relu(b + self.fc(a))


def test_fusion_respects_outside_users():
    m = _Diamond()
    gm, groups = fp.fuse_elementwise(fx.symbolic_trace(m))
    assert groups == [["mul", "add_1", "relu"]]
    x = torch.randn(3, 4)
    torch.testing.assert_close(gm(x), m(x), rtol=0, atol=0)


def test_memory_traffic_counts_round_trips():
    class Chain(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x * 2 + 1)

    x = torch.randn(10, 8)
    gm = fx.symbolic_trace(Chain())
    rows = fp.memory_traffic(gm, x)
    assert [r["kind"] for r in rows] == ["elementwise"] * 3
    assert sum(r["bytes_read"] + r["bytes_written"] for r in rows) == 3 * 2 * x.numel() * 4
    fused_rows = fp.memory_traffic(fp.fuse_elementwise(gm)[0], x)
    assert [r["kind"] for r in fused_rows] == ["fused"]
    assert fused_rows[0]["bytes_read"] + fused_rows[0]["bytes_written"] == 2 * x.numel() * 4


def test_chain_bytes():
    assert fp.chain_bytes(1000, 8) == 2 * 8 * 1000 * 4
    assert fp.chain_bytes(1000, 8, fused=True) == 2 * 1000 * 4
    assert fp.chain_bytes(10, 3, itemsize=2) == 120
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            fp.chain_bytes(bad, 2)
        with pytest.raises(ValueError):
            fp.chain_bytes(10, bad)


def test_chain_kernels_agree_bit_for_bit():
    ops = fp.make_chain(5) + [("relu", None), ("sub", 0.25)]
    x = torch.randn(4097, generator=torch.Generator().manual_seed(3))
    eager = fp.run_chain_eager(x, ops)
    planned = fp.run_chain_planned(x, ops, [torch.empty_like(x), torch.empty_like(x)])
    out = np.empty(x.numel(), dtype=np.float32)
    fp.compile_chain(ops)(x.numpy(), out)
    assert torch.equal(eager, planned)
    assert torch.equal(eager, torch.from_numpy(out))
    src = fp.chain_source(ops)
    assert src.count("for ") == 1 and src.count("out[i] = v") == 1


def test_chain_bad_input():
    with pytest.raises(ValueError):
        fp.make_chain(0)
    with pytest.raises(ValueError, match="op must be"):
        fp.chain_source([("pow", 2.0)])
    with pytest.raises(ValueError, match="empty"):
        fp.run_chain_eager(torch.ones(3), [])
    with pytest.raises(ValueError, match="two buffers"):
        fp.run_chain_planned(torch.ones(3), fp.make_chain(2), [torch.ones(3)])


def test_passes_reject_non_graph_modules():
    for fn in (fp.eliminate_dead_code, fp.fold_constants, fp.fuse_elementwise, fp.node_table, fp.op_counts):
        with pytest.raises(ValueError, match="GraphModule"):
            fn(nn.Linear(2, 2))


def test_best_seconds():
    counts = {"a": 0, "b": 0}

    def tick(name, n):
        def fn():
            counts[name] += 1
            return sum(range(n))
        return fn

    s = fp.best_seconds({"a": tick("a", 100), "b": tick("b", 100_000)}, rounds=2, warmup=1)
    assert set(s) == {"a", "b"} and 0 < s["a"] < s["b"]
    assert counts["a"] > counts["b"] >= 3, "fast kernels are repeated within a round"
    with pytest.raises(ValueError):
        fp.best_seconds({})


def test_plot_graph_draws_one_box_per_node(model_and_input):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, _ = model_and_input
    gm = fx.symbolic_trace(model)
    fig, ax = plt.subplots()
    fp.plot_graph(ax, gm, "traced")
    assert len(ax.patches) == len(gm.graph.nodes)
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2, "the dead aux -> tanh branch is drawn dashed"
    plt.close(fig)
