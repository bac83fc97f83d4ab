"""A real, throw-away Redis server on loopback, for lessons and tests.

:class:`RedisServer` starts Debian's ``redis-server`` as a child process bound
to 127.0.0.1 on a free port, with persistence off (``--save ""``,
``--appendonly no``) and its working directory in a temporary folder, waits
until it answers ``PING``, and always stops it on exit::

    with RedisServer() as server:
        r = server.client()          # a redis.Redis connected to it
        r.set("k", b"v")

Nothing leaves the machine: the server listens on loopback only, and the
course's offline guard allows loopback.  ``redis-server`` is a system package
(``apt.txt``): ``make system-deps`` installs it, Binder installs it from
``apt.txt``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
INSTALL_HINT = ("redis-server is not installed: run `make system-deps` (it installs the packages of apt.txt; "
                "on Debian/Ubuntu that is `sudo apt-get install redis-server`)")


def redis_server_path() -> str | None:
    """Path of the ``redis-server`` executable, or None when it is not installed."""
    return shutil.which("redis-server")


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bind to port 0, read the port the kernel chose, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1, started by ``start()`` / ``with``, stopped by ``stop()``.

    Parameters
    ----------
    startup_timeout_s : how long to wait for the first ``PING`` answer.
    attempts : ports to try; another process may take the chosen port between
        :func:`free_port` and the server's bind, and then we pick another.
    executable : path of ``redis-server`` (default: found on ``PATH``).

    Raises
    ------
    RuntimeError
        when ``redis-server`` is not installed (the message says how to install
        it), or when it does not answer ``PING`` after ``attempts`` tries.
    """

    def __init__(self, *, startup_timeout_s: float = 10.0, attempts: int = 5, executable: str | None = None) -> None:
        if not startup_timeout_s > 0 or attempts < 1:
            raise ValueError(f"need startup_timeout_s > 0 and attempts >= 1, got {startup_timeout_s!r}, {attempts!r}")
        self.executable = executable or redis_server_path()
        self.startup_timeout_s = float(startup_timeout_s)
        self.attempts = int(attempts)
        self.host = HOST
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- life cycle
    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``; returns ``self``."""
        if self.executable is None or not Path(self.executable).exists():
            raise RuntimeError(INSTALL_HINT)
        if self.process is not None:
            raise RuntimeError("this RedisServer is already running")
        self._tmp = tempfile.TemporaryDirectory(prefix="course-redis-")
        errors = []
        try:
            for _ in range(self.attempts):
                port = free_port()
                log = Path(self._tmp.name) / f"redis-{port}.log"
                self.process = subprocess.Popen(
                    [self.executable, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                     "--dir", self._tmp.name, "--daemonize", "no", "--protected-mode", "yes",
                     "--logfile", str(log), "--loglevel", "warning"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )
                if self._wait_for_ping(port):
                    self.port = port
                    return self
                tail = log.read_text(errors="replace").strip()[-300:] if log.exists() else "no log"
                errors.append(f"port {port}: {tail}")
                self._terminate()
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING after {self.attempts} attempts: " + " | ".join(errors))

    def _wait_for_ping(self, port: int) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        deadline = time.monotonic() + self.startup_timeout_s
        # no client-side retries: this loop is the retry, and it must notice at once when the process has exited
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5, socket_timeout=0.5,
                             retry=Retry(NoBackoff(), 0))
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False  # exited: e.g. the port was taken
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    pass
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: redis-server shuts down cleanly (nothing to save: --save "")
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and delete its folder; safe to call twice."""
        self._terminate()
        self.port = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- using it
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` client for this server (bytes in, bytes out)."""
        import redis

        if not self.running or self.port is None:
            raise RuntimeError("the server is not running: use `with RedisServer() as server:` or call start()")
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"RedisServer({where})"
