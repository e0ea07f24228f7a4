"""`tokenomy watch` until Ctrl-C or SIGTERM: it stops and exits cleanly, also when started with SIGINT ignored."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


@pytest.mark.parametrize(
    ("sig", "sigint_ignored_at_start"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
)
def test_watch_runs_until_a_signal(sig: signal.Signals, sigint_ignored_at_start: bool) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "watch", url, "--interval", "0.2", "--json"]
    pre = _ignore_sigint if sigint_ignored_at_start else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pre)
    try:
        first = proc.stdout.readline()  # an interval's report (the engine is unreachable: its error)
        assert first.startswith("{") and "ConnectError" in first, first
    finally:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    rest = proc.stdout.read()
    assert proc.returncode == 0, f"exit {proc.returncode} after {sig.name}:\n{rest[-3000:]}"
    assert "Traceback" not in rest
