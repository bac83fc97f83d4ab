"""course_lib.serving.redis_server: a real redis-server on loopback, and the feature cache in front of it.

These tests start and stop a real server.  They are skipped only when
redis-server is not installed (``make system-deps`` installs it; CI does).
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from course_lib.data import zipf_probs
from course_lib.serving import cache as C
from course_lib.serving import redis_server as rs

needs_redis = pytest.mark.skipif(rs.redis_server_path() is None,
                                 reason="redis-server is not installed: run `make system-deps` (apt.txt)")


@pytest.fixture(scope="module")
def server():
    srv = rs.RedisServer(startup_timeout_s=15)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def test_missing_executable_says_how_to_install(monkeypatch):
    monkeypatch.setattr(rs.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="make system-deps"):
        rs.RedisServer().start()
    with pytest.raises(ValueError):
        rs.RedisServer(attempts=0)


@needs_redis
def test_ping_and_bytes_round_trip(server):
    r = server.client()
    assert r.ping() is True
    assert server.host == "127.0.0.1" and server.running
    x = C.feature_vector(7, 3, 16)
    r.set("feat:7", C.encode_features(3, x))
    version, y = C.decode_features(r.get("feat:7"))
    assert version == 3 and y.tobytes() == x.tobytes()
    assert r.config_get("save")["save"] == "" and r.config_get("appendonly")["appendonly"] == "no"
    r.close()


@needs_redis
def test_mget_pipeline_equals_one_get_per_key(server):
    r = server.client()
    blobs = {f"feat:{e}": C.encode_features(0, C.feature_vector(e, 0, 8)) for e in range(300)}
    r.mset(blobs)
    keys = list(blobs)
    one_by_one = [r.get(k) for k in keys]
    batched = [v for i in range(0, len(keys), 64) for v in r.mget(keys[i : i + 64])]
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.get(k)
    assert one_by_one == batched == pipe.execute() == list(blobs.values())
    assert r.mget(["feat:0", "absent"])[1] is None
    r.close()


@needs_redis
def test_feature_replay_on_redis_equals_dict_store(server):
    r = server.client()
    rng = np.random.default_rng(1)
    n_items, n_req = 200, 1_500
    p = zipf_probs(n_items, 1.0)
    req_t, req_k = np.sort(rng.uniform(0, 10, n_req)), rng.choice(n_items, n_req, p=p)
    upd_t, upd_k = np.sort(rng.uniform(0, 10, 150)), rng.choice(n_items, 150, p=p)
    initial = {f"feat:{e}": C.encode_features(0, C.feature_vector(e, 0, 8)) for e in range(n_items)}
    r.mset(initial)
    store = C.DictStore()
    store.data.update(initial)
    on_redis = C.replay_feature_cache(req_t, req_k, upd_t, upd_k, 0.5, r, dim=8)
    in_process = C.replay_feature_cache(req_t, req_k, upd_t, upd_k, 0.5, store, dim=8)
    assert on_redis.mismatches == 0 and on_redis.store_writes == 150
    assert np.array_equal(on_redis.hit, in_process.hit)
    assert np.array_equal(on_redis.served_version, in_process.served_version)
    assert 0 < on_redis.stale.sum() and 0 < on_redis.hit.mean() < 1
    r.close()


@needs_redis
def test_server_stops_and_frees_its_port():
    with rs.RedisServer() as srv:
        port, proc = srv.port, srv.process
        assert srv.client().ping()
    assert proc.poll() is not None and not srv.running and srv.port is None
    with socket.socket() as s:  # nobody listens there any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(RuntimeError, match="not running"):
        srv.client()
    srv.stop()  # twice is fine


@needs_redis
def test_a_taken_port_is_retried(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real_free_port = rs.free_port
        monkeypatch.setattr(rs, "free_port", lambda host=rs.HOST: next(ports, None) or real_free_port(host))
        with rs.RedisServer(startup_timeout_s=5) as srv:
            assert srv.port != busy and srv.client().ping()
