"""Fixtures shared across the test suite."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def twin() -> Iterator[Callable[..., str]]:
    """Factory: `twin(**running_twin_kwargs) -> base_url`; every twin started is stopped at teardown."""
    from tokenomy.twin.server import running_twin

    with contextlib.ExitStack() as stack:

        def start(**kwargs: Any) -> str:
            return stack.enter_context(running_twin(**kwargs))

        yield start
