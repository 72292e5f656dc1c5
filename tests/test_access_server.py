"""Secure by default (issue 20): ``make run`` listens on 127.0.0.1 only, and serving on a
network address refuses to start until the workspace is ready for sign-in.

The commands are the ones ``make -n run`` prints (so a change to the Makefile is what is
tested); ``make`` itself is only asked, never run, because it would set up the venv.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from streamlit_server import ROOT, free_port, wait_healthy

from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV, Store

pytestmark = pytest.mark.skipif(subprocess.run(["which", "make"], capture_output=True)
                                .returncode != 0, reason="no make on this machine")


def make_run_lines(*variables: str) -> tuple[str, str]:
    """(the access check command, the streamlit command) that ``make run`` would run."""
    out = subprocess.run(["make", "-n", "run", *variables], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    check = next(line for line in out if "access check" in line)
    serve = next(line for line in out if "streamlit run app.py" in line)
    assert out.index(check) < out.index(serve), "the check must run before the server"
    return check, serve


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, DATA_DIR_ENV: str(data_dir), "PYTHONPATH": str(ROOT),
           "PADIM_DEMO_MODEL": "0"}
    env.pop(DATABASE_URL_ENV, None)
    env.pop("PADIM_SIGN_IN", None)
    return env


def _listening(pid: int) -> set[str]:
    addresses = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            addresses |= {c.laddr.ip for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN}
    return addresses


def _websocket_status(port: int, host: str) -> int:
    """The status of a Streamlit websocket upgrade sent with this Host and Origin."""
    import base64
    import socket

    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n"
               "Sec-WebSocket-Protocol: streamlit\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request.encode())
        return int(conn.recv(4096).split(b" ", 2)[1])


def test_make_run_listens_only_on_loopback(tmp_path: Path) -> None:
    check, serve = make_run_lines()
    assert "--host 127.0.0.1" in check and "--server.address 127.0.0.1" in serve
    port = free_port()
    command = re.sub(r"--server\.port \S+", f"--server.port {port}", serve)
    command = command.replace(".venv/bin/streamlit", f"{sys.executable} -m streamlit")
    env = _env(tmp_path / "ws")
    assert subprocess.run(check, shell=True, cwd=ROOT, env=env).returncode == 0
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen(command, shell=True, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=90)
        deadline = time.monotonic() + 10
        while not (found := _listening(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found == {"127.0.0.1"}, found
        # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 (no
        # sign-in on loopback: it would act as admin) is refused; the loopback names work
        assert _websocket_status(port, "evil.example") == 403
        assert _websocket_status(port, "localhost") == 101
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_a_network_address_without_sign_in_set_up_refuses_to_start(tmp_path: Path) -> None:
    check, serve = make_run_lines("HOST=0.0.0.0")
    assert "--server.address 0.0.0.0" in serve
    check = check.replace(".venv/bin/python", sys.executable)
    env = _env(tmp_path / "ws")
    env.pop("PADIM_SECRET", None)
    refused = subprocess.run(check, shell=True, cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0" in refused.stderr
    assert "no workspace at" in refused.stderr and "padim users add" in refused.stderr
    assert not (tmp_path / "ws").exists(), "the check made a workspace"
    (tmp_path / "ws").mkdir()                               # a workspace without an admin
    refused = subprocess.run(check, shell=True, cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert "no admin account" in refused.stderr and "padim users add" in refused.stderr
    added = subprocess.run([sys.executable, "-m", "padim_core", "users", "add", "ann",
                            "--role", "admin"], input="a good password\n", cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert subprocess.run(check, shell=True, cwd=ROOT, env=env).returncode == 0
    with Store.open(tmp_path / "ws") as store:
        assert [u.role for u in store.users.list()] == ["admin"]
