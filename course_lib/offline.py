"""No network at run time: a guard that refuses every non-loopback connection.

Lessons must not download anything.  The test suite, ``make run`` and the
grader start each kernel with :func:`offline_env`, which puts a tiny
``sitecustomize`` on the kernel's path; it calls :func:`block_network` at
interpreter start.  Any attempt to resolve or connect to a host other than
this machine then fails at once with :class:`NetworkBlocked`, *before* a
packet is sent, and names the address.  Loopback and Unix sockets still work
(Jupyter kernels talk to their client over 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

OFFLINE_ENV = "COURSE_OFFLINE"
#: Variables that keep Hugging Face libraries (transformers, sentence-transformers) off the network.
HF_OFFLINE_VARS: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
_SITE_DIR = Path(__file__).resolve().parent / "_offline_site"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


class NetworkBlocked(ConnectionRefusedError):
    """Raised instead of reaching the network while the course runs offline."""


def _is_local_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0].lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def _check_address(address: Any) -> None:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return
    if isinstance(address, tuple) and address and not _is_local_host(address[0]):
        raise NetworkBlocked(f"network access blocked (the course runs offline): tried to reach {address[0]!r}")


def block_network() -> None:
    """Patch ``socket`` so that only loopback and Unix-socket connections are allowed (idempotent)."""
    if getattr(socket, "_course_blocked", False):
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(address)
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(args[-1])
        return real_sendto(self, data, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            raise NetworkBlocked(f"network access blocked (the course runs offline): tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket._course_blocked = True  # type: ignore[attr-defined]
    socket._course_real = (real_connect, real_connect_ex, real_sendto, real_getaddrinfo)  # type: ignore[attr-defined]


def offline_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: ``os.environ``) that starts Python processes offline."""
    env = dict(os.environ if env is None else env)
    env[OFFLINE_ENV] = "1"
    env.update(HF_OFFLINE_VARS)
    paths = [str(_SITE_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def notebook_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for executing a notebook unattended (``make run``, the tests, the grader).

    Offline (see :func:`offline_env`), widgets rendered statically, and this
    environment's Jupyter data folder first on ``JUPYTER_PATH`` so that the
    kernel named ``python3`` is this venv's Python, not one registered elsewhere.
    """
    import sys

    env = offline_env(env)
    env["COURSE_STATIC_WIDGETS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    jupyter = str(Path(sys.prefix) / "share" / "jupyter")
    paths = [jupyter] + [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
