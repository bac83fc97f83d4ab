"""`make lab` serves the course: JupyterLab starts from this environment and sees the lessons and the kernel.

The server listens on 127.0.0.1 only, on a free port, with a random token, and
is stopped at the end of the test; every request stays on this machine.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # loopback only
        return json.loads(resp.read())


@pytest.mark.notebook
def test_jupyterlab_serves_the_course(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status = _get(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {server.stdout.read() if server.poll() is not None else 'timeout'}")
                time.sleep(0.5)
        assert "started" in status
        lesson = _get(f"{base}/api/contents/notebooks/02_vector_search/01_similarity_and_recall.ipynb?content=0", token)
        assert lesson["type"] == "notebook"
        specs = _get(f"{base}/api/kernelspecs", token)
        assert "python3" in specs["kernelspecs"]
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as resp:  # the Lab page itself
            assert resp.status == 200 and b"JupyterLab" in resp.read()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
