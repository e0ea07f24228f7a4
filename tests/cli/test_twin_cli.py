"""`tokenomy twin`: clear errors on bad options, and a real server that starts, answers and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app

runner = CliRunner()


def test_unknown_model_gpu_or_fault_exit_2_with_suggestions() -> None:
    res = runner.invoke(app, ["twin", "--model", "llama-3.1-8x"])
    assert res.exit_code == 2 and "Did you mean: llama-3.1-8b" in res.output
    res = runner.invoke(app, ["twin", "--gpu", "H100-SMX"])
    assert res.exit_code == 2 and "H100-SXM" in res.output
    res = runner.invoke(app, ["twin", "--fail", "explode"])
    assert res.exit_code == 2 and "refuse, http500, cut, stall" in res.output
    res = runner.invoke(app, ["twin", "--model", "llama-3.1-405b", "--gpu", "L4", "--tp", "1"])
    assert res.exit_code == 2 and "does not fit" in res.output


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint_ignored_at_start", [False, True])
def test_serves_until_interrupted(sigint_ignored_at_start: bool) -> None:
    """Ctrl-C stops it, also when it was started with SIGINT ignored (inherited, as under some test runners: Python
    then installs no KeyboardInterrupt handler)."""
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "twin", "--port", "0", "--speedup", "20"]
    cmd += ["--served-model-name", "eight-b", "--max-num-seqs", "8", "--busy-wait"]
    env = {**os.environ, "COLUMNS": "400"}
    pre = _ignore_sigint if sigint_ignored_at_start else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=pre)
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line
        assert "predicted unloaded TTFT" in line and "ITL" in line
        url = match.group(1)
        body = {"model": "eight-b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
        stats = httpx.get(f"{url}/twin/stats").json()
        assert stats["max_num_seqs"] == 8 and stats["busy_wait"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        try:
            proc.wait(timeout=60)  # a busy-waiting twin on two busy cores: seconds, not milliseconds
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    stopped_s = time.monotonic() - interrupted
    assert proc.returncode == 0, f"exit {proc.returncode} {stopped_s:.1f} s after SIGINT:\n{output[-3000:]}"
    assert "twin stopped" in output
