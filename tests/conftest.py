"""Fixtures shared across the test suite."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def twin() -> Iterator[Callable[..., str]]:
    """Factory: `twin(**running_twin_kwargs) -> base_url`; every twin started is stopped at teardown."""
    from tokenomy.twin.server import running_twin

    with contextlib.ExitStack() as stack:

        def start(**kwargs: Any) -> str:
            return stack.enter_context(running_twin(**kwargs))

        yield start


@pytest.fixture
def script_module() -> Iterator[Callable[[str], ModuleType]]:
    """Factory: `script_module("import_gpustack")` loads scripts/<name>.py as a module, registered in sys.modules
    (dataclasses look their module up there) until teardown."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
