"""Serving protocols: one tensor payload over JSON, binary HTTP, gRPC and WebSocket (lesson 07.04).

Everything here runs on the loopback interface only (``127.0.0.1``, port 0 so
the kernel picks a free port), every server is a context manager that stops
its threads on exit, and every client call has a timeout.

* **Codecs.**  A tensor as a JSON list, as base64 inside JSON, and as a
  self-describing binary frame (:func:`encode_tensor` / :func:`decode_tensor`).
* **The model.**  :class:`ProjectionModel`, ``y = tanh(x W)`` with a fixed
  seeded ``W``: deterministic, so what comes back over any protocol can be
  compared bit for bit with calling it in-process.
* **Servers.**  :class:`ModelHTTPServer` (stdlib ``ThreadingHTTPServer``:
  JSON, base64 and binary routes, polling and server-sent events for token
  streams, exact byte counts per request), :class:`ModelGRPCServer` (grpcio
  generic handlers, bytes in and out, no code generation) and
  :class:`ModelWebSocketServer` (``websockets`` sync API).
* **Clients.**  :class:`HTTPModelClient` (keep-alive or a new connection per
  request), :class:`GRPCModelClient`, :class:`WebSocketModelClient`,
  :func:`poll_tokens` and :func:`sse_tokens`.
* **Measuring.**  :class:`ByteCountingRelay` (a TCP relay that counts every
  byte each way, for any protocol) and :func:`latencies` (a count- and
  time-bounded load loop returning a :class:`course_lib.perf.Timing`).
"""

from __future__ import annotations

import base64
import http.client
import http.server
import itertools
import json
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..perf import Timing

LOOPBACK = "127.0.0.1"
#: Seconds any client waits for a server before giving up (every call has a timeout).
DEFAULT_TIMEOUT_S = 10.0

# --------------------------------------------------------------------------------------- binary frame

#: Frame magic (4 bytes) and format version.
MAGIC = b"TNSR"
VERSION = 1
#: Dtype codes of the frame (one byte).  The code names a dtype; the frame is always little-endian.
DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype(np.float16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.float64): 3,
    np.dtype(np.int8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.uint8): 8,
    np.dtype(np.bool_): 9,
}
CODE_DTYPES: dict[int, np.dtype] = {code: dt.newbyteorder("<") for dt, code in DTYPE_CODES.items()}
#: magic, version, dtype code, ndim, reserved (0): 8 bytes, so the shape and data start 8-byte aligned.
FRAME_HEADER = struct.Struct("<4sBBBB")
MAX_NDIM = 32


def encode_tensor(array: Any) -> bytes:
    """A self-describing little-endian binary frame of ``array``.

    Layout (all integers little-endian)::

        offset 0   4s   magic b"TNSR"
        offset 4   u8   version (1)
        offset 5   u8   dtype code (DTYPE_CODES)
        offset 6   u8   ndim (0 to 32)
        offset 7   u8   reserved, 0
        offset 8   ndim x u64   shape
        then       prod(shape) * itemsize bytes of data, C order, little-endian

    Parameters
    ----------
    array : any array-like of a dtype in :data:`DTYPE_CODES`; any memory layout
        (non-contiguous views are copied to C order) and any byte order.

    Returns
    -------
    bytes, of length ``8 + 8 * ndim + nbytes``.  Bit-exact: NaN payloads,
    signed zeros and infinities survive.
    """
    arr = np.asarray(array)
    if arr.dtype.hasobject:
        raise ValueError(f"cannot encode an object array (dtype {arr.dtype}): only numeric and bool dtypes have a fixed binary layout")
    code = DTYPE_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no frame code; supported: {sorted(str(d) for d in DTYPE_CODES)}")
    if arr.ndim > MAX_NDIM:
        raise ValueError(f"at most {MAX_NDIM} dimensions, got {arr.ndim}")
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))  # byte-swaps only if big-endian
    header = FRAME_HEADER.pack(MAGIC, VERSION, code, arr.ndim, 0) + struct.pack(f"<{arr.ndim}Q", *arr.shape)
    return header + little.tobytes()


def decode_tensor(frame: bytes | bytearray | memoryview) -> np.ndarray:
    """The array stored in a frame written by :func:`encode_tensor`.

    Returns a read-only view of ``frame`` when it is ``bytes`` (zero copy; call
    ``.copy()`` to write to it), with a little-endian dtype and the frame's
    shape.  Raises ``ValueError`` for a truncated or over-long frame, a wrong
    magic or version, an unknown dtype code, or bool bytes other than 0 and 1.
    """
    buf = memoryview(frame).cast("B")
    if len(buf) < FRAME_HEADER.size:
        raise ValueError(f"truncated frame: {len(buf)} bytes, the header alone needs {FRAME_HEADER.size}")
    magic, version, code, ndim, reserved = FRAME_HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise ValueError(f"not a tensor frame: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ValueError(f"unsupported frame version {version}, this decoder reads version {VERSION}")
    if code not in CODE_DTYPES:
        raise ValueError(f"unknown dtype code {code}; known codes: {sorted(CODE_DTYPES)}")
    if ndim > MAX_NDIM or reserved != 0:
        raise ValueError(f"corrupt frame header: ndim {ndim} (max {MAX_NDIM}), reserved byte {reserved} (must be 0)")
    data_at = FRAME_HEADER.size + 8 * ndim
    if len(buf) < data_at:
        raise ValueError(f"truncated frame: {len(buf)} bytes, the header and shape of a {ndim}-d tensor need {data_at}")
    shape = struct.unpack_from(f"<{ndim}Q", buf, FRAME_HEADER.size)
    dtype = CODE_DTYPES[code]
    expected = data_at + math.prod(shape) * dtype.itemsize
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "over-long"
        raise ValueError(f"{what} frame: {len(buf)} bytes, shape {shape} of {dtype} needs exactly {expected}")
    out = np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=data_at).reshape(shape)
    if dtype == np.bool_ and np.any(out.view(np.uint8) > 1):
        raise ValueError("corrupt bool data: every byte must be 0 or 1")
    return out


# --------------------------------------------------------------------------------------- JSON codecs


def _check_array(array: Any) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.hasobject or arr.dtype.newbyteorder("=") not in DTYPE_CODES:
        raise ValueError(f"expected a numeric or bool array, got dtype {arr.dtype}")
    return arr


def encode_json(array: Any) -> bytes:
    """``{"dtype", "shape", "data": [numbers...]}`` as UTF-8 JSON: what most REST model APIs send.

    Each float becomes Python's shortest repr of the float64 value (float32 and
    float16 are widened first, exactly), so finite values round-trip exactly.
    NaN and inf are written as the non-standard tokens ``NaN``/``Infinity``
    (Python's default), and a NaN's payload bits are lost.
    """
    arr = _check_array(array)
    doc = {"dtype": arr.dtype.newbyteorder("=").name, "shape": list(arr.shape), "data": arr.ravel().tolist()}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_json(body: bytes) -> np.ndarray:
    """The array of a document written by :func:`encode_json` (``ValueError`` if malformed)."""
    try:
        doc = json.loads(body)
        dtype = np.dtype(doc["dtype"])
        shape = tuple(int(s) for s in doc["shape"])
        data = doc["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"malformed JSON tensor: {err}") from None
    if dtype.newbyteorder("=") not in DTYPE_CODES:
        raise ValueError(f"unsupported dtype {dtype} in JSON tensor")
    arr = np.asarray(data, dtype=dtype)
    if arr.size != math.prod(shape):
        raise ValueError(f"JSON tensor: {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def encode_b64(array: Any) -> bytes:
    """``{"dtype", "shape", "b64": base64 of the raw little-endian bytes}`` as JSON: 4/3 of raw, exact."""
    arr = _check_array(array)
    raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    doc = {"dtype": arr.dtype.newbyteorder("=").name, "shape": list(arr.shape), "b64": base64.b64encode(raw).decode("ascii")}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_b64(body: bytes) -> np.ndarray:
    """The array of a document written by :func:`encode_b64` (``ValueError`` if malformed)."""
    try:
        doc = json.loads(body)
        dtype = np.dtype(doc["dtype"]).newbyteorder("<")
        shape = tuple(int(s) for s in doc["shape"])
        raw = base64.b64decode(doc["b64"], validate=True)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"malformed base64 tensor: {err}") from None
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"base64 tensor: {len(raw)} bytes for shape {shape} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


@dataclass(frozen=True)
class Codec:
    """One way to put a tensor in a message body."""

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], np.ndarray]
    content_type: str


CODECS: dict[str, Codec] = {
    "json": Codec("json", encode_json, decode_json, "application/json"),
    "b64": Codec("b64", encode_b64, decode_b64, "application/json"),
    "binary": Codec("binary", encode_tensor, decode_tensor, "application/octet-stream"),
}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` have the same dtype, shape and bytes (NaN payloads included)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.newbyteorder("=") != b.dtype.newbyteorder("=") or a.shape != b.shape:
        return False
    la = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    lb = np.ascontiguousarray(b, dtype=b.dtype.newbyteorder("<"))
    return la.tobytes() == lb.tobytes()


# --------------------------------------------------------------------------------------- the model


class ProjectionModel:
    """``y = tanh(x W)``: a deterministic stand-in for an embedding model's head.

    ``W`` is (d_in, d_out) float32 drawn from a seeded normal and scaled by
    1/sqrt(d_in).  Calling it twice on the same input gives the same bits,
    which is what lets a test compare a remote answer with a local one exactly.
    Run servers inside ``config.single_thread()``: a multi-threaded BLAS in
    every request thread of a 2-core machine oversubscribes it (tens of ms
    of spinning per call).
    """

    def __init__(self, d_in: int = 384, d_out: int = 384, seed: int = 0) -> None:
        if d_in < 1 or d_out < 1:
            raise ValueError(f"need d_in, d_out >= 1, got {d_in}, {d_out}")
        rng = np.random.default_rng(seed)
        self.W = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
        self.d_in, self.d_out = d_in, d_out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(batch, d_in) float32 -> (batch, d_out) float32."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.d_in or x.dtype != np.float32:
            raise ValueError(f"expected a (batch, {self.d_in}) float32 array, got shape {x.shape} dtype {x.dtype}")
        return np.tanh(x @ self.W)


# --------------------------------------------------------------------------------------- token streams


def make_tokens(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic word tokens (what a fake LLM "generates")."""
    vocab = ["the", "model", "serves", "tokens", "over", "a", "socket", "and", "every", "byte", "counts", "fast"]
    rng = np.random.default_rng(seed)
    return [vocab[i] for i in rng.integers(0, len(vocab), size=n)]


@dataclass
class TokenJob:
    """A generation in progress: token ``i`` becomes available at ``start + (i + 1) * delay_s``."""

    tokens: list[str]
    delay_s: float
    start: float = field(default_factory=time.perf_counter)

    def available(self, now: float | None = None) -> int:
        """How many tokens exist at time ``now`` (perf_counter seconds)."""
        now = time.perf_counter() if now is None else now
        if self.delay_s == 0:
            return len(self.tokens)
        return min(len(self.tokens), max(0, int((now - self.start) / self.delay_s)))

    def stream(self) -> Iterator[str]:
        """Yield each token at its scheduled time (sleeping in between)."""
        for i, token in enumerate(self.tokens):
            wait = self.start + (i + 1) * self.delay_s - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield token


def _check_job(n_tokens: Any, delay_s: Any) -> tuple[int, float]:
    n, d = int(n_tokens), float(delay_s)
    if not 0 < n <= 10_000 or not 0 <= d <= 1.0:
        raise ValueError(f"need 0 < n_tokens <= 10000 and 0 <= delay_s <= 1, got {n}, {d}")
    return n, d


@dataclass(frozen=True)
class StreamResult:
    """Tokens a client received, their arrival times (seconds after the request) and requests made."""

    tokens: list[str]
    arrivals_s: list[float]
    requests: int

    @property
    def ttft_s(self) -> float:
        """Time to first token."""
        return self.arrivals_s[0] if self.arrivals_s else math.inf

    @property
    def total_s(self) -> float:
        """Time to the last token."""
        return self.arrivals_s[-1] if self.arrivals_s else math.inf


# --------------------------------------------------------------------------------------- HTTP/1.1 server


class _CountingFile:
    """Wraps a socket file and counts the bytes read from or written to it."""

    def __init__(self, f: Any) -> None:
        self._f, self.n = f, 0

    def read(self, *args: Any) -> bytes:
        data = self._f.read(*args)
        self.n += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data = self._f.readline(*args)
        self.n += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class _ModelHandler(http.server.BaseHTTPRequestHandler):
    """The routes of :class:`ModelHTTPServer` (one instance per connection)."""

    protocol_version = "HTTP/1.1"  # keep-alive by default; a client may still send "Connection: close"
    disable_nagle_algorithm = True  # headers and body go out without waiting for an ACK (see the lesson)
    timeout = DEFAULT_TIMEOUT_S  # an idle keep-alive connection is dropped after this many seconds
    server: ModelHTTPServer._Server

    def setup(self) -> None:
        super().setup()
        self.rfile = _CountingFile(self.rfile)
        self.wfile = _CountingFile(self.wfile)

    def handle_one_request(self) -> None:
        before = (self.rfile.n, self.wfile.n)
        super().handle_one_request()
        if self.wfile.n > before[1]:  # a response was sent: record the request's bytes both ways
            self.server.owner._record(self.path, self.rfile.n - before[0], self.wfile.n - before[1])

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        owner, path = self.server.owner, urlsplit(self.path).path
        try:
            if path.startswith("/v1/predict/") and path[len("/v1/predict/"):] in CODECS:
                codec = CODECS[path[len("/v1/predict/"):]]
                y = owner.model(codec.decode(body))
                self._reply(200, codec.encode(y), codec.content_type)
            elif path == "/v1/generate":
                req = json.loads(body)
                n, d = _check_job(req["n_tokens"], req["delay_s"])
                job_id = owner._new_job(TokenJob(make_tokens(n, int(req.get("seed", 0))), d))
                self._reply(200, json.dumps({"job": job_id}).encode(), "application/json")
            else:
                self._reply(404, b"unknown route", "text/plain")
        except (ValueError, KeyError, TypeError) as err:
            self._reply(400, str(err).encode(), "text/plain")

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            if parts.path.startswith("/v1/poll/"):
                job = self.server.owner._jobs[int(parts.path[len("/v1/poll/"):])]
                since = int(query.get("since", 0))
                ready = job.available()
                doc = {"tokens": job.tokens[since:ready], "done": ready == len(job.tokens)}
                self._reply(200, json.dumps(doc).encode(), "application/json")
            elif parts.path == "/v1/sse":
                n, d = _check_job(query["n_tokens"], query["delay_s"])
                self._server_sent_events(TokenJob(make_tokens(n, int(query.get("seed", 0))), d))
            else:
                self._reply(404, b"unknown route", "text/plain")
        except (ValueError, KeyError, TypeError) as err:
            self._reply(400, str(err).encode(), "text/plain")

    def _server_sent_events(self, job: TokenJob) -> None:
        """One ``data:`` event per token on a response that stays open, then ``event: done``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # no Content-Length: the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        for token in job.stream():
            self.wfile.write(f"data: {token}\n\n".encode())
        self.wfile.write(b"event: done\ndata: \n\n")


class ModelHTTPServer:
    """A threaded HTTP/1.1 model server on 127.0.0.1, run in a background thread.

    Routes: ``POST /v1/predict/{json,b64,binary}`` (a tensor in, the model's
    output out, same codec), ``POST /v1/generate`` + ``GET /v1/poll/<job>``
    (token polling), ``GET /v1/sse`` (server-sent events).  ``requests``
    records ``(path, bytes_in, bytes_out)`` per request: the exact HTTP bytes,
    request line and headers included (TCP/IP headers are not).

    Use as a context manager::

        with ModelHTTPServer(model) as server:
            HTTPModelClient(server.port).predict(x)
    """

    class _Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        owner: ModelHTTPServer

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], max_jobs: int = 10_000) -> None:
        self.model = model
        self.requests: list[tuple[str, int, int]] = []
        self._jobs: dict[int, TokenJob] = {}
        self._ids = itertools.count()
        self._max_jobs = max_jobs
        self._lock = threading.Lock()
        self._httpd: ModelHTTPServer._Server | None = None
        self._thread: threading.Thread | None = None

    def _record(self, path: str, n_in: int, n_out: int) -> None:
        with self._lock:
            self.requests.append((path, n_in, n_out))

    def wait_recorded(self, count: int, timeout: float = 2.0) -> list[tuple[str, int, int]]:
        """``requests`` once it holds at least ``count`` entries.

        A handler records a request just *after* writing its response, so a
        client can hold the answer a moment before the server's bookkeeping.
        """
        deadline = time.perf_counter() + timeout
        while len(self.requests) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(self.requests)} requests recorded after {timeout} s, expected {count}")
            time.sleep(0.001)
        with self._lock:
            return list(self.requests)

    def _new_job(self, job: TokenJob) -> int:
        with self._lock:
            if len(self._jobs) >= self._max_jobs:
                raise ValueError(f"too many jobs (max {self._max_jobs})")
            job_id = next(self._ids)
            self._jobs[job_id] = job
            return job_id

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running (use it as a context manager)")
        return int(self._httpd.server_address[1])

    def __enter__(self) -> ModelHTTPServer:
        self._httpd = self._Server((LOOPBACK, 0), _ModelHandler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, close the listening socket and join the thread (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=DEFAULT_TIMEOUT_S)
            self._httpd = None


class HTTPModelClient:
    """``http.client`` against :class:`ModelHTTPServer`: one kept-alive connection, or a new one per request.

    With ``keep_alive=False`` every request opens a TCP connection, sends
    ``Connection: close`` and closes it: the handshake (and the server's new
    thread) is paid on every call, as with a naive ``requests.post``.
    """

    def __init__(self, port: int, *, keep_alive: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.port, self.keep_alive, self.timeout = port, keep_alive, timeout
        self._conn: http.client.HTTPConnection | None = None
        self.requests = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/octet-stream") -> bytes:
        """Send one request and return the response body (``RuntimeError`` on a non-200 status).

        A kept-alive connection the server has meanwhile closed (its idle
        timeout) fails on send or before any response byte; like urllib3's
        pool, we then reconnect and send once more.  Any other failure raises.
        """
        headers = {"Content-Type": content_type} if body is not None else {}
        if not self.keep_alive:
            headers["Connection"] = "close"
        for attempt in (1, 2):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.close()  # a broken connection is never reused
                if not (reused and attempt == 1):
                    raise
            except BaseException:
                self.close()
                raise
            finally:
                if not self.keep_alive:
                    self.close()
        self.requests += 1
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} from {path}: {data[:200]!r}")
        return data

    def predict(self, x: np.ndarray, codec: str = "binary") -> np.ndarray:
        """The model's output for ``x``, sent and received with ``codec`` ("json", "b64" or "binary")."""
        c = CODECS[codec]
        return c.decode(self.request("POST", f"/v1/predict/{codec}", c.encode(x), c.content_type))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HTTPModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def poll_tokens(port: int, n_tokens: int, delay_s: float, poll_s: float, *, seed: int = 0, max_s: float = 30.0) -> StreamResult:
    """Start a generation, then ask for new tokens every ``poll_s`` seconds until done (one kept-alive connection).

    Arrival times are measured from just before the ``/v1/generate`` request.
    Stops by itself after ``max_s`` seconds (``TimeoutError``).
    """
    tokens: list[str] = []
    arrivals: list[float] = []
    with HTTPModelClient(port) as client:
        t0 = time.perf_counter()
        job = json.loads(client.request("POST", "/v1/generate", json.dumps({"n_tokens": n_tokens, "delay_s": delay_s, "seed": seed}).encode(), "application/json"))["job"]
        next_poll = time.perf_counter()
        while True:
            doc = json.loads(client.request("GET", f"/v1/poll/{job}?since={len(tokens)}"))
            now = time.perf_counter() - t0
            tokens += doc["tokens"]
            arrivals += [now] * len(doc["tokens"])
            if doc["done"]:
                return StreamResult(tokens, arrivals, client.requests)
            if now > max_s:
                raise TimeoutError(f"polling gave up after {max_s} s with {len(tokens)}/{n_tokens} tokens")
            next_poll += poll_s
            time.sleep(max(0.0, next_poll - time.perf_counter()))


def sse_tokens(port: int, n_tokens: int, delay_s: float, *, seed: int = 0, timeout: float = DEFAULT_TIMEOUT_S) -> StreamResult:
    """Receive a generation as server-sent events (one GET, the response body streams)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    tokens: list[str] = []
    arrivals: list[float] = []
    try:
        t0 = time.perf_counter()
        conn.request("GET", f"/v1/sse?n_tokens={n_tokens}&delay_s={delay_s}&seed={seed}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} from /v1/sse")
        event = "message"
        while line := resp.readline():
            line = line.rstrip(b"\r\n")
            if line.startswith(b"event: "):
                event = line[len(b"event: "):].decode()
            elif line.startswith(b"data: ") and event == "message":
                tokens.append(line[len(b"data: "):].decode())
                arrivals.append(time.perf_counter() - t0)
            elif event == "done" and not line:
                break
    finally:
        conn.close()
    return StreamResult(tokens, arrivals, 1)


# --------------------------------------------------------------------------------------- gRPC

GRPC_SERVICE = "course.Model"
#: grpc would honour http_proxy even for 127.0.0.1 if it were set; loopback must never go through a proxy.
GRPC_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]


class ModelGRPCServer:
    """A grpcio server with two methods and no generated code.

    ``/course.Model/Predict`` (unary): a tensor frame in, the model's output
    frame out.  ``/course.Model/Generate`` (server streaming): JSON
    ``{"n_tokens", "delay_s", "seed"}`` in, one UTF-8 token per message out.
    Without serializers grpcio hands the handler the raw message bytes, so
    :func:`encode_tensor` *is* the wire format (plus gRPC's 5-byte prefix).
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], max_workers: int = 4) -> None:
        self.model, self.max_workers = model, max_workers
        self._server: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self.port = 0

    def _predict(self, request: bytes, context: Any) -> bytes:
        return encode_tensor(self.model(decode_tensor(request)))

    def _generate(self, request: bytes, context: Any) -> Iterator[bytes]:
        req = json.loads(request)
        n, d = _check_job(req["n_tokens"], req["delay_s"])
        for token in TokenJob(make_tokens(n, int(req.get("seed", 0))), d).stream():
            yield token.encode()

    def __enter__(self) -> ModelGRPCServer:
        import grpc

        handler = grpc.method_handlers_generic_handler(
            GRPC_SERVICE,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(self._predict),  # no (de)serializer: bytes in, bytes out
                "Generate": grpc.unary_stream_rpc_method_handler(self._generate),
            },
        )
        self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="grpc-model")
        self._server = grpc.server(self._executor, handlers=[handler], options=GRPC_CHANNEL_OPTIONS[1:])
        self.port = self._server.add_insecure_port(f"{LOOPBACK}:0")
        if self.port == 0:
            raise RuntimeError("gRPC could not bind a loopback port")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop at once (in-flight calls are cancelled) and wait until stopped (idempotent)."""
        if self._server is not None:
            self._server.stop(grace=None).wait(timeout=DEFAULT_TIMEOUT_S)
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
            self._server = None


class GRPCModelClient:
    """One HTTP/2 channel to a :class:`ModelGRPCServer` (or to a relay in front of it)."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        import grpc

        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"{LOOPBACK}:{port}", options=GRPC_CHANNEL_OPTIONS)
        self._predict = self._channel.unary_unary(f"/{GRPC_SERVICE}/Predict")  # bytes -> bytes
        self._generate = self._channel.unary_stream(f"/{GRPC_SERVICE}/Generate")
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return decode_tensor(self._predict(encode_tensor(x), timeout=self.timeout))

    def generate(self, n_tokens: int, delay_s: float, *, seed: int = 0) -> StreamResult:
        t0 = time.perf_counter()
        tokens, arrivals = [], []
        request = json.dumps({"n_tokens": n_tokens, "delay_s": delay_s, "seed": seed}).encode()
        for message in self._generate(request, timeout=self.timeout + n_tokens * delay_s):
            tokens.append(message.decode())
            arrivals.append(time.perf_counter() - t0)
        return StreamResult(tokens, arrivals, 1)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GRPCModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------- WebSocket

#: Large tensors must fit in one message; per-message compression off so bytes and CPU are comparable.
WS_OPTIONS: dict[str, Any] = {"compression": None, "max_size": 256 << 20}


class ModelWebSocketServer:
    """A ``websockets`` (sync API) server: a binary message is a tensor frame to predict on;
    a text message ``{"n_tokens", "delay_s", "seed"}`` asks for a generation, streamed as one
    text message per token and then an empty text message."""

    def __init__(self, model: Callable[[np.ndarray], np.ndarray]) -> None:
        self.model = model
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for message in ws:
                if isinstance(message, bytes):
                    ws.send(encode_tensor(self.model(decode_tensor(message))))
                else:
                    req = json.loads(message)
                    n, d = _check_job(req["n_tokens"], req["delay_s"])
                    for token in TokenJob(make_tokens(n, int(req.get("seed", 0))), d).stream():
                        ws.send(token)
                    ws.send("")
        except ConnectionClosed:
            pass

    @property
    def uri(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running (use it as a context manager)")
        return f"ws://{LOOPBACK}:{self._server.socket.getsockname()[1]}"

    def __enter__(self) -> ModelWebSocketServer:
        from websockets.sync.server import serve

        self._server = serve(self._handle, LOOPBACK, 0, open_timeout=DEFAULT_TIMEOUT_S, close_timeout=1, **WS_OPTIONS)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection, stop serving and join the thread (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout=DEFAULT_TIMEOUT_S)
            self._server = None


class WebSocketModelClient:
    """One WebSocket connection: tensors as binary messages, token streams as text messages."""

    def __init__(self, uri: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        from websockets.sync.client import connect

        self.timeout = timeout
        self._connect = connect(uri, open_timeout=timeout, close_timeout=1, **WS_OPTIONS)
        self._ws = self._connect.__enter__()  # websockets wants connect() used as a context manager

    def predict(self, x: np.ndarray) -> np.ndarray:
        self._ws.send(encode_tensor(x))
        return decode_tensor(self._ws.recv(timeout=self.timeout))

    def generate(self, n_tokens: int, delay_s: float, *, seed: int = 0) -> StreamResult:
        t0 = time.perf_counter()
        self._ws.send(json.dumps({"n_tokens": n_tokens, "delay_s": delay_s, "seed": seed}))
        tokens, arrivals = [], []
        while token := self._ws.recv(timeout=self.timeout):
            tokens.append(token)
            arrivals.append(time.perf_counter() - t0)
        return StreamResult(tokens, arrivals, 1)

    def close(self) -> None:
        self._connect.__exit__(None, None, None)

    def __enter__(self) -> WebSocketModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------- measuring


class ByteCountingRelay:
    """A TCP relay on 127.0.0.1 that forwards to ``(LOOPBACK, target_port)`` and counts bytes.

    Point any client at ``relay.port`` instead of the server's port:
    ``bytes_up`` (client to server) and ``bytes_down`` count every byte of
    TCP payload (the protocol's framing, headers and handshakes included;
    TCP/IP headers and TLS are not part of it).  For timing, talk to the
    server directly: the relay adds a hop.
    """

    def __init__(self, target_port: int, capture: int = 0) -> None:
        self.target_port = target_port
        self.capture = capture
        #: The first ``capture`` bytes of each direction (to read a protocol's headers).
        self.captured_up = b""
        self.captured_down = b""
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the relay is not running (use it as a context manager)")
        return int(self._listener.getsockname()[1])

    def reset(self) -> None:
        """Zero the counters and the captured bytes (connections stay open)."""
        with self._lock:
            self.bytes_up = self.bytes_down = self.connections = 0
            self.captured_up = self.captured_down = b""

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(1 << 16)
                if not data:
                    break
                with self._lock:  # count before forwarding: once the peer has the bytes, so do the counters
                    if up:
                        self.bytes_up += len(data)
                        self.captured_up += data[: max(0, self.capture - len(self.captured_up))]
                    else:
                        self.bytes_down += len(data)
                        self.captured_down += data[: max(0, self.capture - len(self.captured_down))]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=DEFAULT_TIMEOUT_S)
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                t.start()
                self._threads.append(t)

    def __enter__(self) -> ByteCountingRelay:
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, close every relayed connection and join the threads (idempotent)."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=DEFAULT_TIMEOUT_S)
        self._threads = []


def latencies(fn: Callable[[], Any], n: int, *, name: str, warmup: int = 3, max_s: float = 20.0) -> Timing:
    """Call ``fn()`` up to ``n`` times (after ``warmup`` untimed calls) and return the latencies.

    A bounded load loop: it stops after ``n`` timed calls or once ``max_s``
    seconds have passed, whichever comes first (at least one call is timed).
    """
    if n < 1 or warmup < 0 or max_s <= 0:
        raise ValueError(f"need n >= 1, warmup >= 0, max_s > 0, got {n=}, {warmup=}, {max_s=}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + max_s
    while len(times) < n and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(name=name, times=tuple(times))


def interleaved_latencies(fns: dict[str, Callable[[], Any]], n: int, *, warmup: int = 3, max_s: float = 20.0) -> dict[str, Timing]:
    """Like :func:`latencies` for several clients, taking turns call by call.

    Alternating A, B, A, B... spreads any slow-down of a shared machine (another
    job, a frequency change) over every client alike, so their ratio is fairer
    than timing A's block and then B's.
    """
    if n < 1 or warmup < 0 or max_s <= 0:
        raise ValueError(f"need n >= 1, warmup >= 0, max_s > 0, got {n=}, {warmup=}, {max_s=}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    deadline = time.perf_counter() + max_s
    for i in range(n):
        if i and time.perf_counter() > deadline:
            break
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: Timing(name=k, times=tuple(v)) for k, v in times.items()}


def check_loopback(timeout: float = 2.0) -> float:
    """Round-trip one byte over a 127.0.0.1 TCP connection; returns the seconds it took.

    A lesson calls this first: if the sandbox blocks loopback too, it fails
    here with a clear error rather than deep inside a server.
    """
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(timeout)
        t0 = time.perf_counter()
        with socket.create_connection(listener.getsockname(), timeout=timeout) as client:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(timeout)
                client.sendall(b"x")
                if peer.recv(1) != b"x":
                    raise RuntimeError("loopback TCP returned the wrong byte")
        return time.perf_counter() - t0
