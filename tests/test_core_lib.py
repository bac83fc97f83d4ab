"""course_lib.config, data.synthetic, perf, viz, checks, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from course_lib import checks, config, perf, viz
from course_lib.data import synthetic
from course_lib.offline import offline_env


# ---------------------------------------------------------------- config
def test_profiles():
    small, full = config.profile("small"), config.profile("full")
    assert small.n_vectors < full.n_vectors and small.n_corpus < full.n_corpus
    assert config.profile() == small
    with pytest.raises(ValueError, match="unknown size"):
        config.profile("medium")
    with pytest.raises(KeyError):
        small.get("n_train")
    assert small.get("n_train", 5) == 5
    assert small.scaled(n_vectors=10).n_vectors == 10


def test_seed_everything_is_reproducible():
    a = config.seed_everything(3).random(4)
    b = config.seed_everything(3).random(4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        config.seed_everything(-1)


def test_single_thread_restores_settings():
    faiss = pytest.importorskip("faiss")
    from threadpoolctl import threadpool_info

    before = faiss.omp_get_max_threads()
    with config.single_thread():
        assert faiss.omp_get_max_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert faiss.omp_get_max_threads() == before


# ---------------------------------------------------------------- synthetic data
def test_generators_shapes_and_determinism():
    for make in (synthetic.make_uniform, synthetic.make_anisotropic):
        X = make(100, 7, seed=1)
        assert X.shape == (100, 7) and X.dtype == np.float32
        np.testing.assert_array_equal(X, make(100, 7, seed=1))
    X, y = synthetic.make_gaussian_mixture(300, 20, n_clusters=5, intrinsic_dim=3, seed=2, return_labels=True)
    assert X.shape == (300, 20) and y.shape == (300,) and set(y) <= set(range(5))
    np.testing.assert_array_equal(X, synthetic.make_gaussian_mixture(300, 20, n_clusters=5, intrinsic_dim=3, seed=2))


def test_intrinsic_dimension_tracks_the_truth():
    low = synthetic.make_gaussian_mixture(3000, 64, intrinsic_dim=4, noise_std=0.0, seed=0)
    high = synthetic.make_uniform(3000, 32, seed=0)
    assert synthetic.intrinsic_dimension(low) < 8
    assert synthetic.intrinsic_dimension(high) > 15


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: synthetic.make_uniform(0, 3), "positive"),
        (lambda: synthetic.make_uniform(3, 2.5), "positive"),
        (lambda: synthetic.make_gaussian_mixture(10, 4, intrinsic_dim=5), "intrinsic_dim"),
        (lambda: synthetic.make_anisotropic(10, 4, decay=-1), "decay"),
        (lambda: synthetic.split_queries(np.ones((5, 2)), 5), "n_queries"),
        (lambda: synthetic.intrinsic_dimension(np.ones((5, 2)), k=10), "more than"),
    ],
)
def test_generators_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_split_queries_holds_out(rng):
    X = rng.standard_normal((50, 3)).astype(np.float32)
    db, q = synthetic.split_queries(X, 10, seed=0)
    assert len(db) == 40 and len(q) == 10
    assert not (q[:, None, :] == db[None]).all(-1).any()


# ---------------------------------------------------------------- perf
def test_time_fn_and_compare():
    t_fast = perf.time_fn(lambda: None, name="fast", repeats=3)
    t_slow = perf.time_fn(time.sleep, 0.002, name="slow", repeats=3, warmup=0)
    assert len(t_fast.times) == 3 and t_slow.median >= 0.002 and t_slow.p99 >= t_slow.median
    rows = perf.compare([t_fast, t_slow], reference="slow")
    assert rows[1]["ratio_vs_slow"] == 1.0 and rows[0]["ratio_vs_slow"] < 1.0
    with pytest.raises(ValueError, match="reference"):
        perf.compare([t_fast], reference="missing")
    with pytest.raises(ValueError):
        perf.time_fn(lambda: None, repeats=0)


def test_memory_measurement():
    use = perf.traced_peak_memory(lambda: np.ones(2_000_000, dtype=np.float64).sum())
    assert 15 < use.peak_mb < 40 and use.result == 2_000_000
    assert perf.peak_rss_mb() > 10


# ---------------------------------------------------------------- viz
def test_interactive_renders_statically(monkeypatch, capsys):
    monkeypatch.setenv(viz.STATIC_ENV, "1")
    calls = []
    viz.interactive(lambda d=3: calls.append(d), d=(1, 10))
    assert calls == [3] and "static" in capsys.readouterr().out


def test_show_source_and_figure():
    code = viz.show_source(viz.figure)
    assert "def figure" in getattr(code, "data", code)
    with pytest.raises(ValueError, match="source"):
        viz.show_source(len)
    import matplotlib

    matplotlib.use("Agg")
    fig, ax = viz.figure("t", "x (s)", "y (MB)")
    assert ax.get_xlabel() == "x (s)" and ax.get_title() == "t"
    fig, axes = viz.figure("t", "x", "y", ncols=2)
    assert len(axes) == 2


# ---------------------------------------------------------------- checks
def test_checks_pass_and_fail():
    c = checks.Checks("unit")
    assert c.equal("ids", 1.0, 1.0)
    assert c.close("close", 1.001, 1.0, rtol=0.01)
    assert c.at_most("ratio", 1.2, 1.5) and c.at_least("recall", 0.95, 0.9)
    c.done()
    bad = checks.Checks("unit")
    bad.at_least("recall", 0.5, 0.9)
    bad.close("nan", float("nan"), 1.0, atol=1)
    with pytest.raises(AssertionError, match="2 check"):
        bad.done()
    assert json.dumps(bad.as_json())
    with pytest.raises(AssertionError, match="must check"):
        checks.Checks("empty").done()


# ---------------------------------------------------------------- offline guard
GUARD_PROBE = r"""
import socket
from course_lib.offline import NetworkBlocked
assert socket._course_blocked
# Swap the real connect for a tripwire: if the guard let a call through, the tripwire fires
# (no packet can ever leave this test).
def tripwire(*a, **k):
    raise SystemExit("guard let a non-loopback connection through")
real = socket._course_real
for target in [("192.0.2.1", 80), ("2001:db8::1", 443, 0, 0)]:
    fam = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.connect(target)
    except NetworkBlocked as err:
        assert "blocked" in str(err)
    else:
        raise SystemExit("not blocked")
    finally:
        s.close()
try:
    socket.getaddrinfo("example.invalid", 80)
except NetworkBlocked:
    pass
else:
    raise SystemExit("DNS not blocked")
socket.getaddrinfo("localhost", 80)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname(), timeout=2)  # loopback still works
cli.close(); srv.close()
print("ok")
"""


def test_offline_guard_blocks_everything_but_loopback():
    env = offline_env()
    proc = subprocess.run([sys.executable, "-c", GUARD_PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr + proc.stdout


def test_offline_env_marks_process():
    env = offline_env({"PYTHONPATH": "x"})
    assert env["COURSE_OFFLINE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"].endswith(os.pathsep + "x")


def test_compare_per_item():
    a = perf.Timing("a", (0.2, 0.2))
    b = perf.Timing("b", (0.1, 0.1))
    rows = perf.compare([a, b], reference="a", items={"a": 200, "b": 50}, unit="items")
    assert rows[1]["ratio_vs_a"] == 2.0  # b: 2 ms per item vs a: 1 ms per item
    assert rows[0]["items_per_s"] == 1000.0 and rows[1]["items"] == 50
    with pytest.raises(ValueError, match=">= 1"):
        perf.compare([a], reference="a", items=0)


def test_check_number_and_check_int_say_what_was_expected():
    from course_lib.validate import check_int, check_number

    assert check_number(np.float32(2.5), "rate", low=0, low_open=True) == 2.5
    assert check_number(0, "rate", low=0) == 0.0
    for bad, match in [(0, "rate must be > 0"), (-1, "rate must be > 0"), (float("nan"), "finite number"),
                       (True, "finite number"), ("3", "finite number")]:
        with pytest.raises(ValueError, match=match):
            check_number(bad, "rate", low=0, low_open=True)
    with pytest.raises(ValueError, match="p must be <= 1"):
        check_number(1.5, "p", low=0, high=1)
    with pytest.raises(ValueError, match="p must be < 1"):
        check_number(1, "p", high=1, high_open=True)
    assert check_int(np.int64(3), "k", low=1) == 3 and type(check_int(np.int64(3), "k")) is int
    for bad in (0, 2.0, True, None):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            check_int(bad, "k", low=1)
    with pytest.raises(ValueError, match="n must be an int >= 0 and <= 9"):
        check_int(10, "n", low=0, high=9)
