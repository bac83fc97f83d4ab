"""Tests for course_lib.serving.protocols: codecs, servers on 127.0.0.1 (always stopped), clients, byte counts."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from course_lib.serving import protocols as P


@pytest.fixture(scope="module")
def model() -> P.ProjectionModel:
    return P.ProjectionModel(d_in=16, d_out=8, seed=3)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def http_server(model):
    with P.ModelHTTPServer(model) as server:
        yield server


# --------------------------------------------------------------------------------------- binary frame

ARRAYS = {
    "float32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "float16": np.linspace(-2, 2, 9, dtype=np.float16),
    "int64": np.array([[-(2**62), 0, 2**62 + 1]], dtype=np.int64),
    "bool": np.array([True, False, True]),
    "0-d": np.array(3.5, dtype=np.float64),
    "empty": np.zeros((0, 384), dtype=np.float32),
    "non-contiguous": np.arange(40, dtype=np.int32).reshape(5, 8)[::2, 1::3],
    "big-endian": np.arange(6, dtype=">f4").reshape(2, 3),
    "uint8": np.arange(256, dtype=np.uint8),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_frame_round_trip_is_bit_exact(name):
    a = ARRAYS[name]
    out = P.decode_tensor(P.encode_tensor(a))
    assert out.shape == a.shape and out.dtype == a.dtype.newbyteorder("<")
    assert P.same_bits(out, a)


def test_frame_layout_matches_the_spec():
    a = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    want = b"TNSR" + bytes([1, 2, 2, 0]) + struct.pack("<2Q", 1, 3) + struct.pack("<3f", 1.0, -2.0, 0.5)
    assert P.encode_tensor(a) == want
    assert len(P.encode_tensor(np.float32(1))) == 8 + 4  # 0-d: no shape words


def test_frame_keeps_nan_payloads_and_signed_zero():
    bits = np.array([0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000, 0x80000000, 0x7F800001], dtype=np.uint32)
    a = bits.view(np.float32)
    assert np.array_equal(P.decode_tensor(P.encode_tensor(a)).view(np.uint32), bits)
    assert P.decode_b64(P.encode_b64(a)).view(np.uint32).tolist() == bits.tolist()


def test_json_loses_nan_payloads_but_keeps_finite_floats_exactly():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 7)).astype(np.float32)
    assert P.same_bits(P.decode_json(P.encode_json(a)), a)
    h = rng.standard_normal(9).astype(np.float16)
    assert P.same_bits(P.decode_json(P.encode_json(h)), h)
    nan = np.array([0x7FC00001], dtype=np.uint32).view(np.float32)
    back = P.decode_json(P.encode_json(nan))
    assert np.isnan(back[0]) and back.view(np.uint32)[0] != 0x7FC00001


@pytest.mark.parametrize(
    "frame, match",
    [
        (b"TNS", "truncated"),
        (b"XXXX" + bytes([1, 2, 1, 0]) + struct.pack("<Q", 0), "magic"),
        (b"TNSR" + bytes([9, 2, 1, 0]) + struct.pack("<Q", 0), "version"),
        (b"TNSR" + bytes([1, 99, 1, 0]) + struct.pack("<Q", 0), "unknown dtype code 99"),
        (b"TNSR" + bytes([1, 2, 2, 0]) + struct.pack("<Q", 1), "truncated"),
        (b"TNSR" + bytes([1, 2, 1, 0]) + struct.pack("<Q", 2) + b"\0" * 7, "truncated"),
        (b"TNSR" + bytes([1, 2, 1, 0]) + struct.pack("<Q", 1) + b"\0" * 5, "over-long"),
        (b"TNSR" + bytes([1, 9, 1, 0]) + struct.pack("<Q", 2) + b"\x01\x02", "bool"),
        (b"TNSR" + bytes([1, 2, 40, 0]), "corrupt"),
    ],
)
def test_bad_frames_raise_clear_value_errors(frame, match):
    with pytest.raises(ValueError, match=match):
        P.decode_tensor(frame)


def test_every_truncation_of_a_frame_is_rejected():
    frame = P.encode_tensor(np.ones((2, 3), dtype=np.float16))
    for n in range(len(frame)):
        with pytest.raises(ValueError):
            P.decode_tensor(frame[:n])


@pytest.mark.parametrize("bad", [np.array([{"a": 1}], dtype=object), np.array(["abc"]), np.array([1 + 2j])])
def test_unsupported_dtypes_raise(bad):
    with pytest.raises(ValueError):
        P.encode_tensor(bad)
    with pytest.raises(ValueError):
        P.encode_json(bad)


def test_binary_is_at_most_half_of_json_and_b64_is_four_thirds():
    a = np.random.default_rng(2).standard_normal((32, 384)).astype(np.float32)
    raw = a.nbytes
    assert len(P.encode_tensor(a)) == raw + 8 + 16
    assert len(P.encode_tensor(a)) <= len(P.encode_json(a)) / 2
    assert 4 / 3 * raw <= len(P.encode_b64(a)) <= 4 / 3 * raw + 100


def test_malformed_json_tensors_raise():
    with pytest.raises(ValueError):
        P.decode_json(b"{not json")
    with pytest.raises(ValueError):
        P.decode_json(json.dumps({"dtype": "float32", "shape": [3], "data": [1, 2]}).encode())
    with pytest.raises(ValueError):
        P.decode_b64(json.dumps({"dtype": "float32", "shape": [3], "b64": "AAAA"}).encode())


# --------------------------------------------------------------------------------------- model, tokens


def test_model_is_deterministic_and_validates(model, x):
    assert P.same_bits(model(x), model(x.copy()))
    assert model(x).shape == (5, 8) and model(x).dtype == np.float32
    with pytest.raises(ValueError, match="float32"):
        model(x.astype(np.float64))


def test_token_job_schedule():
    job = P.TokenJob(P.make_tokens(5), delay_s=0.01, start=100.0)
    assert [job.available(100.0 + t) for t in (0.0, 0.0105, 0.0305, 1.0)] == [0, 1, 3, 5]
    assert P.make_tokens(6, seed=1) == P.make_tokens(6, seed=1)


# --------------------------------------------------------------------------------------- servers and clients


@pytest.mark.parametrize("codec", sorted(P.CODECS))
@pytest.mark.parametrize("keep_alive", [True, False])
def test_http_round_trip_matches_in_process(http_server, model, x, codec, keep_alive):
    with P.HTTPModelClient(http_server.port, keep_alive=keep_alive, timeout=5) as client:
        for _ in range(2):
            assert P.same_bits(client.predict(x, codec), model(x))


def test_http_errors_are_400_not_crashes(http_server):
    with P.HTTPModelClient(http_server.port, timeout=5) as client:
        with pytest.raises(RuntimeError, match="400"):
            client.request("POST", "/v1/predict/binary", b"garbage")
        with pytest.raises(RuntimeError, match="404"):
            client.request("POST", "/v1/nothing", b"")
        assert client.predict(np.zeros((1, 16), np.float32)).shape == (1, 8)  # the connection still works


def test_relay_counts_exactly_what_the_server_counts(http_server, x):
    start = len(http_server.requests)
    with P.ByteCountingRelay(http_server.port) as relay:
        with P.HTTPModelClient(relay.port, timeout=5) as client:
            client.predict(x, "binary")
            client.predict(x, "json")
        (path, n_in, n_out), (path2, n_in2, n_out2) = http_server.wait_recorded(start + 2)[start:]
        assert (path, path2) == ("/v1/predict/binary", "/v1/predict/json")
        assert relay.bytes_up == n_in + n_in2 and relay.bytes_down == n_out + n_out2
        assert relay.connections == 1


def test_polling_and_sse_deliver_the_same_tokens(http_server):
    polled = P.poll_tokens(http_server.port, 6, delay_s=0.005, poll_s=0.02, max_s=5)
    sse = P.sse_tokens(http_server.port, 6, delay_s=0.005, timeout=5)
    assert polled.tokens == sse.tokens == P.make_tokens(6)
    assert polled.requests >= 2 and sse.requests == 1
    assert np.all(np.diff(sse.arrivals_s) >= 0) and sse.ttft_s <= sse.total_s


def test_grpc_unary_and_streaming(model, x):
    with P.ModelGRPCServer(model, max_workers=2) as server:
        with P.GRPCModelClient(server.port, timeout=5) as client:
            assert P.same_bits(client.predict(x), model(x))
            stream = client.generate(5, 0.002)
            assert stream.tokens == P.make_tokens(5) and len(stream.arrivals_s) == 5
        with P.ByteCountingRelay(server.port) as relay, P.GRPCModelClient(relay.port, timeout=5) as client:
            client.predict(x)
            assert relay.bytes_up > len(P.encode_tensor(x)) + 5  # payload + 5-byte prefix + HTTP/2 frames


def test_websocket_unary_and_streaming(model, x):
    with P.ModelWebSocketServer(model) as server:
        with P.WebSocketModelClient(server.uri, timeout=5) as client:
            assert P.same_bits(client.predict(x), model(x))
            stream = client.generate(5, 0.002)
            assert stream.tokens == P.make_tokens(5) and stream.requests == 1


def test_servers_stop_and_free_their_ports(model):
    before = threading.active_count()
    ports = []
    with P.ModelHTTPServer(model) as h, P.ModelWebSocketServer(model) as w, P.ModelGRPCServer(model, max_workers=1) as g:
        ports = [h.port, int(w.uri.rsplit(":", 1)[1]), g.port]
        with P.HTTPModelClient(h.port, timeout=5) as client:
            client.predict(np.zeros((1, 16), np.float32))
    deadline = time.perf_counter() + 5
    while threading.active_count() > before and time.perf_counter() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= before
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection((P.LOOPBACK, port), timeout=1).close()


def test_server_stops_even_when_the_body_raises(model):
    with pytest.raises(ZeroDivisionError):
        with P.ModelHTTPServer(model) as server:
            port = server.port
            1 / 0
    with pytest.raises(OSError):
        socket.create_connection((P.LOOPBACK, port), timeout=1).close()


# --------------------------------------------------------------------------------------- measuring


def test_latencies_are_bounded_by_count_and_time():
    t = P.latencies(lambda: None, 50, name="noop", warmup=0)
    assert len(t.times) == 50
    slow = P.latencies(lambda: time.sleep(0.02), 10_000, name="slow", warmup=0, max_s=0.1)
    assert 1 <= len(slow.times) <= 10
    both = P.interleaved_latencies({"a": lambda: None, "b": lambda: None}, 7, warmup=1)
    assert [len(v.times) for v in both.values()] == [7, 7]
    with pytest.raises(ValueError):
        P.latencies(lambda: None, 0, name="x")


def test_check_loopback():
    assert P.check_loopback() > 0


def test_keep_alive_client_reconnects_after_the_server_dropped_an_idle_connection(model, x):
    with P.ModelHTTPServer(model) as server, P.HTTPModelClient(server.port, timeout=5) as client:
        client.predict(x)
        client._conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed the idle connection out
        assert P.same_bits(client.predict(x), model(x))
