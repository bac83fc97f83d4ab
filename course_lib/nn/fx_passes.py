"""Graph passes on torch.fx graphs: what an ML compiler does before it writes a single kernel.

``torch.fx.symbolic_trace(model)`` turns a module's ``forward`` into a
:class:`torch.fx.Graph`: a list of nodes in execution order, each one
``placeholder`` (an input), ``get_attr`` (a parameter or buffer),
``call_module`` / ``call_function`` / ``call_method`` (an operation) or
``output``.  Every pass below takes a :class:`torch.fx.GraphModule`, returns a
**new** one (the input is never modified) plus what it changed, and must leave
the outputs unchanged:

* :func:`eliminate_dead_code`: drop pure nodes whose result nobody uses;
* :func:`fold_constants`: run, once, every node that depends only on
  parameters and buffers, and store its result as a buffer;
* :func:`fold_bn_into_linear` / :func:`fold_linear_bn`: merge an eval-mode
  BatchNorm into the Linear before it (new weights, one op fewer);
* :func:`fuse_elementwise`: group chains of elementwise ops into one node
  that calls one function (the fused op).

:func:`memory_traffic` counts the bytes each op reads and writes (one
"round trip" to memory per op), which is what fusion saves.  The last part is
the **bytes-moved model** of an elementwise chain and a tiny code generator
(:func:`compile_chain`) that turns a chain into one loop compiled by numba:
the step that makes fusion fast, which Inductor, XLA and TVM do for real.

Shapes: ``B`` batch, ``d`` features; ``n`` elements of a flat float32 tensor.
"""

from __future__ import annotations

import copy
import math
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

# --------------------------------------------------------------------------- #
# What the passes know about ops
# --------------------------------------------------------------------------- #
#: Functions that compute each output element from the same element of their inputs.
ELEMENTWISE_FUNCTIONS: frozenset[Any] = frozenset({
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.abs, torch.exp, torch.log,
    torch.sqrt, torch.rsqrt, torch.tanh, torch.sigmoid, torch.relu, torch.erf, torch.clamp,
    F.relu, F.gelu, F.silu, F.sigmoid, F.tanh,
})
#: Tensor methods that are elementwise (``x.relu()``).  In-place ones (``x.relu_()``) are not listed.
ELEMENTWISE_METHODS: frozenset[str] = frozenset({
    "add", "sub", "mul", "div", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "clamp",
})
#: Modules that are elementwise functions with no state.
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)
#: Functions with a side effect: never removed, never folded.
SIDE_EFFECT_FUNCTIONS: frozenset[Any] = frozenset({operator.setitem, print, torch._assert})
#: Functions whose result is random: never folded (folding would freeze one draw).
RANDOM_FUNCTIONS: frozenset[Any] = frozenset({torch.rand, torch.randn, torch.randint, torch.rand_like,
                                              torch.randn_like, torch.bernoulli, F.dropout})


def _check_graph_module(gm: Any) -> None:
    if not isinstance(gm, fx.GraphModule):
        raise ValueError(f"expected a torch.fx.GraphModule (from torch.fx.symbolic_trace), got {type(gm).__name__}")


def _fused_ops(node: fx.Node, modules: dict[str, nn.Module]) -> list[str]:
    """The ops inside a node made by :func:`fuse_elementwise` (empty for any other node)."""
    if node.op != "call_module":
        return []
    return list(getattr(modules[node.target], "meta", {}).get("fused_ops", []))


def _target_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A short readable name of what a node runs: ``Linear``, ``mul``, ``.relu``, ``fused(add+mul)``."""
    if node.op == "call_module":
        fused = _fused_ops(node, modules)
        return f"fused({'+'.join(fused)})" if fused else type(modules[node.target]).__name__
    if node.op == "call_method":
        return "." + node.target
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def is_elementwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """True when ``node`` is an elementwise op (output element i depends on input element i only)."""
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in ELEMENTWISE_METHODS
    if node.op == "call_module":
        return isinstance(modules.get(node.target), ELEMENTWISE_MODULES)
    return False


def is_pure(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """True when removing ``node`` (if nobody uses it) cannot change anything a caller sees.

    Impure: inputs and the output; in-place ops (a name ending in a single
    ``_``, such as ``x.add_(1)``); functions with side effects (``setitem``,
    ``print``, asserts); and modules in training mode that own buffers
    (a BatchNorm in training updates its running statistics even if its
    output is unused).
    """
    if node.op in ("placeholder", "output"):
        return False
    if node.op == "get_attr":
        return True
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name.endswith("_") and not name.endswith("__"):
        return False
    if node.op == "call_function":
        return node.target not in SIDE_EFFECT_FUNCTIONS
    if node.op == "call_module":
        mod = modules[node.target]
        return not getattr(mod, "_is_impure", False) and not (mod.training and any(True for _ in mod.buffers()))
    return True


# --------------------------------------------------------------------------- #
# Looking at a graph
# --------------------------------------------------------------------------- #
def _arg_text(arg: Any) -> str:
    if isinstance(arg, fx.Node):
        return arg.name
    if isinstance(arg, (tuple, list)):
        return "(" + ", ".join(_arg_text(a) for a in arg) + ")"
    return repr(arg)


def node_table(gm: fx.GraphModule) -> list[dict[str, Any]]:
    """One row per node, in execution order: name, op kind, what it runs, its inputs and its users."""
    _check_graph_module(gm)
    modules = dict(gm.named_modules())
    rows = []
    for i, node in enumerate(gm.graph.nodes):
        args = [_arg_text(a) for a in node.args] + [f"{k}={_arg_text(v)}" for k, v in node.kwargs.items()]
        rows.append({
            "#": i,
            "name": node.name,
            "op": node.op,
            "target": (f"{node.target}: {_target_name(node, modules)}" if node.op == "call_module"
                       else node.target if node.op == "get_attr" else _target_name(node, modules)),
            "args": ", ".join(args),
            "users": ", ".join(u.name for u in node.users),
            "elementwise": is_elementwise(node, modules),
        })
    return rows


def plot_graph(ax: Any, gm: fx.GraphModule, title: str = "") -> None:
    """Draw the graph on a matplotlib axis: one box per node, arrows from inputs to users.

    Rows are depths (longest path from an input, top to bottom); colours say
    what a node is: input/output grey, constant (``get_attr``) green, module
    or other op blue, elementwise orange, fused red.  A dead node (the output
    does not depend on it, and it has no side effect) has a dashed red outline.
    """
    _check_graph_module(gm)
    from matplotlib.patches import FancyBboxPatch

    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    depth: dict[fx.Node, int] = {}
    for node in nodes:
        depth[node] = 1 + max((depth[a] for a in node.all_input_nodes), default=-1)
    rows: dict[int, list[fx.Node]] = {}
    for node in nodes:
        rows.setdefault(depth[node], []).append(node)
    width = max(len(r) for r in rows.values())
    pos = {n: ((i + 0.5) * width / len(r), -d) for d, r in rows.items() for i, n in enumerate(r)}
    live: set[fx.Node] = set()
    for node in reversed(nodes):  # live: the output depends on it (or it has a side effect)
        if node.op == "output" or not is_pure(node, modules) or any(u in live for u in node.users):
            live.add(node)
    colours = {"placeholder": "#bbbbbb", "output": "#bbbbbb", "get_attr": "#98df8a"}
    for node in nodes:
        for user in node.users:
            skip = depth[user] - depth[node] > 1  # an edge that jumps rows bends around the boxes between
            ax.annotate("", xy=pos[user], xytext=pos[node],
                        arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 1.0, "shrinkA": 12, "shrinkB": 12,
                                    "connectionstyle": f"arc3,rad={0.4 if skip else 0.0}"})
    for node, (x, y) in pos.items():
        colour = colours.get(node.op) or ("#ff9896" if _fused_ops(node, modules) else
                                          "#ffbb78" if is_elementwise(node, modules) else "#aec7e8")
        dead = node not in live
        edge = {"ec": "#d62728", "ls": "--", "lw": 1.5} if dead else {"ec": "#333333", "ls": "-", "lw": 0.8}
        ax.add_patch(FancyBboxPatch((x - 0.42, y - 0.22), 0.84, 0.44, boxstyle="round,pad=0.02", fc=colour, **edge))
        what = _target_name(node, modules) if node.op.startswith("call_") else node.op
        ax.text(x, y, node.name if what == node.name else f"{node.name}\n{what}", ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-max(rows) - 0.6, 0.6)
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def op_counts(gm: fx.GraphModule) -> Counter[str]:
    """How many times each operation runs per forward pass (inputs, outputs and attributes left out)."""
    _check_graph_module(gm)
    modules = dict(gm.named_modules())
    return Counter(_target_name(n, modules) for n in gm.graph.nodes if n.op.startswith("call_"))


# --------------------------------------------------------------------------- #
# Pass 1: dead-code elimination
# --------------------------------------------------------------------------- #
def eliminate_dead_code(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """Remove every pure node whose result is never used; return ``(new_gm, removed node names)``.

    One sweep in reverse execution order is enough: erasing a dead node
    removes it from its inputs' user lists, and those inputs come earlier in
    the list, so they are visited after it and seen dead if it was their only
    user.  Submodules that no node calls any more are deleted too.
    """
    _check_graph_module(gm)
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    removed = []
    for node in reversed(list(gm.graph.nodes)):
        if not node.users and is_pure(node, modules):
            removed.append(node.name)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, removed[::-1]


# --------------------------------------------------------------------------- #
# Pass 2: constant folding
# --------------------------------------------------------------------------- #
def _run_node(node: fx.Node, modules: dict[str, nn.Module], env: dict[fx.Node, Any]) -> Any:
    """Execute one node with its inputs taken from ``env`` (a one-node torch.fx.Interpreter)."""
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return modules[node.target](*args, **kwargs)


def _fetch_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def fold_constants(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """Evaluate, once, every node whose inputs are all constants; return ``(new_gm, folded node names)``.

    Constants are ``get_attr`` nodes (parameters and buffers) and anything
    computed only from them, such as ``torch.exp(self.log_scale) + 1``.  Each
    constant result that a non-constant node (or the output) uses becomes a
    buffer ``_folded_<i>`` read by one ``get_attr`` node; the nodes that
    computed it become dead and are removed.  This is an **inference** pass:
    the buffer is a snapshot, so it no longer follows the parameter if the
    parameter is trained.  Random and impure nodes are never folded, nor
    nodes with no inputs at all (``torch.arange(4)`` in ``forward``).
    """
    _check_graph_module(gm)
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    value: dict[fx.Node, Any] = {}
    folded: list[fx.Node] = []
    with torch.no_grad():
        for node in gm.graph.nodes:
            if node.op == "get_attr":
                value[node] = _fetch_attr(gm, node.target)
            elif (node.op.startswith("call_") and node.all_input_nodes
                  and all(a in value for a in node.all_input_nodes)
                  and is_pure(node, modules) and node.target not in RANDOM_FUNCTIONS):
                value[node] = _run_node(node, modules, value)
                folded.append(node)
    for i, node in enumerate(n for n in folded if isinstance(value[n], torch.Tensor)
                             and any(u not in value for u in n.users)):
        name = f"_folded_{i}"
        while hasattr(gm, name):
            name += "_"
        gm.register_buffer(name, value[node].detach().clone())
        with gm.graph.inserting_before(node):
            const = gm.graph.get_attr(name)
        node.replace_all_uses_with(const)
    gm.recompile()
    gm, _ = eliminate_dead_code(gm)
    return gm, [n.name for n in folded]


# --------------------------------------------------------------------------- #
# Pass 3: Linear + BatchNorm folding
# --------------------------------------------------------------------------- #
def fold_bn_into_linear(linear: nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> nn.Linear:
    """A new ``nn.Linear`` equal to ``bn(linear(x))`` for an eval-mode BatchNorm over the features.

    With ``s = gamma / sqrt(running_var + eps)`` (one scale per output feature):

    ``W' = W * s[:, None]`` (row j of W scaled by s_j), shape (out, in);
    ``b' = (b - running_mean) * s + beta``, shape (out,).

    ``bias=None`` counts as b = 0 and ``affine=False`` as gamma = 1, beta = 0.
    The result always has a bias.  Neither input is modified.
    """
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise ValueError(f"bn must be a BatchNorm module, got {type(bn).__name__}")
    if bn.training:
        raise ValueError("bn is in training mode: it normalises with batch statistics, which no fixed weights "
                         "can reproduce; call bn.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False): nothing to fold")
    if bn.num_features != linear.out_features:
        raise ValueError(f"bn.num_features ({bn.num_features}) must equal linear.out_features ({linear.out_features})")
    with torch.no_grad():
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        b = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
        s = gamma / torch.sqrt(bn.running_var + bn.eps)
        folded = nn.Linear(linear.in_features, linear.out_features, bias=True,
                           device=linear.weight.device, dtype=linear.weight.dtype)
        folded.weight.copy_(linear.weight * s[:, None])
        folded.bias.copy_((b - bn.running_mean) * s + beta)
    return folded.train(linear.training)


def _set_submodule(gm: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def fold_linear_bn(gm: fx.GraphModule, *example_inputs: torch.Tensor) -> tuple[fx.GraphModule, list[tuple[str, str]]]:
    """Fold every eval-mode ``BatchNorm1d`` that directly follows a ``Linear``; return ``(new_gm, [(linear, bn)])``.

    Preconditions the pass proves before it rewrites: the Linear's only user
    is the BatchNorm (otherwise someone still needs the un-normalised output),
    the BatchNorm is in eval mode with running statistics, and the Linear's
    output is 2-D, shape (B, d), so that BatchNorm1d's channel axis is the
    Linear's feature axis.  The shapes come from running ``example_inputs``
    through the graph (``torch.fx.passes.shape_prop.ShapeProp``): on a
    (B, C, L) input, BatchNorm1d normalises axis 1 while Linear mixes the last
    axis, and folding would be wrong.
    """
    _check_graph_module(gm)
    gm = copy.deepcopy(gm)
    ShapeProp(gm).propagate(*example_inputs)
    modules = dict(gm.named_modules())
    pairs = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm1d):
            continue
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules[src.target], nn.Linear)):
            continue
        bn, linear = modules[node.target], modules[src.target]
        meta = src.meta.get("tensor_meta")
        if len(src.users) != 1 or bn.training or bn.running_mean is None or meta is None or len(meta.shape) != 2:
            continue
        _set_submodule(gm, src.target, fold_bn_into_linear(linear, bn))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        pairs.append((src.name, node.name))
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, pairs


# --------------------------------------------------------------------------- #
# Pass 4: elementwise fusion
# --------------------------------------------------------------------------- #
def elementwise_groups(gm: fx.GraphModule, min_ops: int = 2) -> list[list[fx.Node]]:
    """Groups of elementwise nodes that can become one fused node, each in execution order.

    Grown backwards from a root (the group's single output): an elementwise
    input joins the group when **all** its users are already in it, so no
    intermediate result is needed outside, and only the root's result must
    be written to memory.  ``y * sigmoid(y)`` fuses with whatever computed
    ``y`` because both users of ``y`` are in the group.  Groups with fewer
    than ``min_ops`` nodes are dropped (nothing to save).
    """
    _check_graph_module(gm)
    modules = dict(gm.named_modules())
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    taken: set[fx.Node] = set()
    groups = []
    for root in reversed(list(gm.graph.nodes)):
        if root in taken or not is_elementwise(root, modules):
            continue
        group, grew = {root}, True
        while grew:
            grew = False
            for member in list(group):
                for p in member.all_input_nodes:
                    if (p not in group and p not in taken and is_elementwise(p, modules)
                            and all(u in group for u in p.users)):
                        group.add(p)
                        grew = True
        if len(group) >= min_ops:
            groups.append(sorted(group, key=order.__getitem__))
            taken |= group
    return groups[::-1]


def fuse_elementwise(gm: fx.GraphModule, min_ops: int = 2) -> tuple[fx.GraphModule, list[list[str]]]:
    """Replace each group of :func:`elementwise_groups` by one node calling a fused function.

    The fused function is a small ``GraphModule`` (``fused_<i>``) whose
    inputs are the group's outside inputs and whose generated ``forward`` runs
    the group's ops in order (print ``gm.fused_0.code``).  Returns
    ``(new_gm, [names of the nodes in each group])``.  Note what this does
    *not* do: the fused function still runs one torch kernel per op, so it is
    no faster; a code generator (Inductor, XLA, TVM; :func:`compile_chain`
    below) must turn the group into one loop for the saving to be real.
    """
    _check_graph_module(gm)
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    fused_names = []
    for i, group in enumerate(elementwise_groups(gm, min_ops)):
        inside = set(group)
        sub = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        outside: list[fx.Node] = []
        for node in group:
            for a in node.all_input_nodes:
                if a not in inside and a not in env:
                    env[a] = sub.placeholder(a.name)
                    outside.append(a)
            env[node] = sub.node_copy(node, lambda a: env[a])
        root = group[-1]
        sub.output(env[root])
        name = f"fused_{i}"
        while hasattr(gm, name):
            name += "_"
        fused = fx.GraphModule(gm, sub, class_name="Fused" + "_".join(n.name for n in group))
        fused.meta["fused_ops"] = [_target_name(n, modules) for n in group]  # how the tables name it
        gm.add_submodule(name, fused)
        with gm.graph.inserting_before(root):
            new = gm.graph.call_module(name, tuple(outside))
        root.replace_all_uses_with(new)
        for node in reversed(group):
            gm.graph.erase_node(node)
        fused_names.append([n.name for n in group])
    gm.graph.lint()
    gm.recompile()
    return gm, fused_names


# --------------------------------------------------------------------------- #
# Bytes moved per op: what fusion saves
# --------------------------------------------------------------------------- #
def _tensor_bytes(node: Any) -> int:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        return 0
    return math.prod(meta.shape) * torch.empty((), dtype=meta.dtype).element_size()


def memory_traffic(gm: fx.GraphModule, *example_inputs: torch.Tensor) -> list[dict[str, Any]]:
    """Bytes each op reads and writes when it runs as its own kernel (one round trip to memory).

    One row per ``call_*`` node: ``bytes_read`` = its tensor inputs plus the
    parameters and buffers of a called module, ``bytes_written`` = its
    output, from shapes found by running ``example_inputs`` (ShapeProp).
    This is the minimum traffic of an unfused eager run: each op reads its
    inputs from memory and writes its result back.  A fused node counts only
    its outside inputs and its one output.
    """
    _check_graph_module(gm)
    gm = copy.deepcopy(gm)
    ShapeProp(gm).propagate(*example_inputs)
    modules = dict(gm.named_modules())
    rows = []
    for node in gm.graph.nodes:
        if not node.op.startswith("call_"):
            continue
        read = sum(_tensor_bytes(a) for a in node.all_input_nodes)
        if node.op == "call_module":
            read += sum(t.numel() * t.element_size() for t in modules[node.target].state_dict().values())
        kind = ("fused" if _fused_ops(node, modules) else "elementwise" if is_elementwise(node, modules) else "other")
        rows.append({"node": node.name, "op": _target_name(node, modules), "kind": kind,
                     "bytes_read": read, "bytes_written": _tensor_bytes(node)})
    return rows


def chain_bytes(n: int, k: int, *, itemsize: int = 4, fused: bool = False) -> int:
    """Bytes moved by a chain of ``k`` unary elementwise ops on ``n`` elements.

    Unfused, every op reads its input and writes its output: ``2 k n itemsize``.
    Fused into one loop, the input is read once and the output written once:
    ``2 n itemsize``, whatever ``k``.  (STREAM counting: the extra read of a
    written cache line, "write-allocate", is not counted, so the bandwidth
    that turns bytes into seconds must be measured the same way, by a copy.)
    """
    for name, v in (("n", n), ("k", k), ("itemsize", itemsize)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return 2 * int(n) * int(itemsize) * (1 if fused else int(k))


# --------------------------------------------------------------------------- #
# A chain of elementwise ops: torch eager, torch with planned buffers, one compiled loop
# --------------------------------------------------------------------------- #
#: The ops a chain may hold: name -> (loop body expression in v and c, torch function).
CHAIN_OPS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    "add": ("v + {c}", torch.add),
    "mul": ("v * {c}", torch.mul),
    "sub": ("v - {c}", torch.sub),
    "relu": ("max(v, {c})", lambda x, c=None, out=None: torch.clamp_min(x, 0.0, out=out)),  # c is unused: 0
}


def make_chain(k: int) -> list[tuple[str, float]]:
    """A chain of ``k`` cheap ops, ``mul 1.0001, add -0.5, mul 1.0001, add -0.5, ...`` (values stay bounded)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return [("mul", 1.0001) if i % 2 == 0 else ("add", -0.5) for i in range(int(k))]


def _check_chain(ops: Sequence[tuple[str, float | None]]) -> None:
    if not ops:
        raise ValueError("the chain is empty: give at least one (op, constant) pair")
    for op in ops:
        if not (isinstance(op, tuple) and len(op) == 2 and op[0] in CHAIN_OPS):
            raise ValueError(f"each op must be (name, constant) with name in {sorted(CHAIN_OPS)}, got {op!r}")


def run_chain_eager(x: torch.Tensor, ops: Sequence[tuple[str, float | None]]) -> torch.Tensor:
    """The chain as eager torch code: one kernel, and one freshly allocated tensor, per op."""
    _check_chain(ops)
    for name, c in ops:
        x = CHAIN_OPS[name][1](x, c)
    return x


def run_chain_planned(x: torch.Tensor, ops: Sequence[tuple[str, float | None]],
                      buffers: Sequence[torch.Tensor]) -> torch.Tensor:
    """The same kernels, writing into two preallocated buffers in turn (``out=``), as a memory planner would.

    Still one pass over memory per op, but no allocation: this is what the
    bytes-moved model describes.  ``buffers``: two tensors shaped like ``x``.
    """
    _check_chain(ops)
    if len(buffers) != 2 or any(b.shape != x.shape or b.dtype != x.dtype for b in buffers):
        raise ValueError(f"need two buffers of shape {tuple(x.shape)} and dtype {x.dtype}")
    src = x
    for i, (name, c) in enumerate(ops):
        dst = buffers[i % 2]
        CHAIN_OPS[name][1](src, c, out=dst)
        src = dst
    return src


def chain_source(ops: Sequence[tuple[str, float | None]]) -> str:
    """Python source of one loop that applies the whole chain to each element (the "generated kernel")."""
    _check_chain(ops)
    consts = [f"c{i} = np.float32({0.0 if name == 'relu' else float(c)!r})" for i, (name, c) in enumerate(ops)]
    body = [f"        v = {CHAIN_OPS[name][0].format(c=f'c{i}')}" for i, (name, _) in enumerate(ops)]
    return "\n".join(consts + ["", "def kernel(x, out):", "    for i in range(x.shape[0]):",
                               "        v = x[i]", *body, "        out[i] = v"]) + "\n"


def compile_chain(ops: Sequence[tuple[str, float | None]]) -> Callable[[np.ndarray, np.ndarray], None]:
    """Compile :func:`chain_source` with numba: one loop, one read and one write per element.

    Returns ``kernel(x, out)`` on 1-D float32 numpy arrays (``tensor.numpy()``
    shares memory with the tensor).  Arithmetic stays in float32 (the
    constants are float32), so add/mul chains give bit-identical results to
    torch.  The first call compiles (about a second).
    """
    from numba import njit

    namespace: dict[str, Any] = {"np": np}
    exec(chain_source(ops), namespace)  # noqa: S102 - our own generated source, no user input
    return njit(cache=False)(namespace["kernel"])


def best_seconds(kernels: dict[str, Callable[[], Any]], *, rounds: int = 3, warmup: int = 1,
                 round_seconds: float = 0.005) -> dict[str, float]:
    """Best wall-clock seconds per call of each kernel, timed in interleaved rounds.

    After ``warmup`` untimed calls each, every round calls every kernel in
    turn, as many times as fill about ``round_seconds`` (at least once).  On
    a shared machine a neighbour's burst of load then slows one round of
    every kernel instead of all the repeats of one, and the best call is the
    least noisy estimate of what the hardware can do (the same method as
    lesson 08.01's ``course_lib.hardware.measure_rates``, without its
    minimum of five calls for slow kernels).
    """
    from .. import perf

    if not kernels:
        raise ValueError("no kernels to time")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got {rounds=}, {warmup=}")
    best = {name: math.inf for name in kernels}
    calls: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in kernels.items():
            t = perf.time_fn(fn, repeats=calls.get(name, 1), warmup=warmup if name not in calls else 0).best
            best[name] = min(best[name], t)
            calls.setdefault(name, max(1, min(1000, int(round_seconds / max(t, 1e-7)))))
    return best


# --------------------------------------------------------------------------- #
# The lesson's model: something worth compiling
# --------------------------------------------------------------------------- #
class DemoMLP(nn.Module):
    """A residual MLP block with everything a graph compiler looks for.

    ``y = z * sigmoid(z)`` with ``z = (fc2(gelu(bn(fc1(x)))) + x) * (exp(log_scale) + 1)``

    * Linear -> BatchNorm1d: foldable in eval mode;
    * ``exp(log_scale) + 1``: a constant subexpression (``log_scale`` is a
      parameter, as CLIP's ``logit_scale``), recomputed on every call unless folded;
    * ``aux``: a dead branch (computed, then never used), as left behind by
      a feature flag or a removed head;
    * add -> mul -> sigmoid -> mul: an elementwise chain to fuse.
    """

    def __init__(self, d: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.aux = nn.Linear(d, d)
        self.log_scale = nn.Parameter(torch.full((d,), -0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn(self.fc1(x)))
        unused = torch.tanh(self.aux(x))  # noqa: F841 - the dead branch, on purpose
        scale = torch.exp(self.log_scale) + 1.0
        z = (self.fc2(h) + x) * scale
        return z * torch.sigmoid(z)


def make_demo_model(d: int = 64, hidden: int = 256, seed: int = 0) -> DemoMLP:
    """A :class:`DemoMLP` in eval mode with non-trivial BatchNorm statistics (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DemoMLP(d, hidden)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(hidden, generator=g) * 0.5)
        model.bn.running_var.copy_(torch.rand(hidden, generator=g) * 1.5 + 0.25)
        model.bn.weight.copy_(torch.rand(hidden, generator=g) + 0.5)
        model.bn.bias.copy_(torch.randn(hidden, generator=g) * 0.1)
        model.log_scale.copy_(torch.randn(d, generator=g) * 0.3 - 0.5)
    return model.eval()
