"""Property-based fuzz of the gateway's request schema: every answer is < 500 and OpenAI-shaped JSON (or an SSE stream).

hypothesis generates request bodies for /v1/chat/completions, /v1/completions and /v1/embeddings: plausible
requests with fields perturbed (every allowed field with random JSON values, unknown fields, `stream` as 1 or
"yes", null limits, huge numbers), non-object JSON, and raw bytes (truncated JSON, NaN, 100k-deep nesting,
invalid UTF-8). Each goes into the gateway app in this process (the ASGI call uvicorn would make) with a twin
(`tokenomy twin`, on a thread, over real HTTP on 127.0.0.1) as the upstream. A bad answer is a status ≥ 500,
or a body that is neither JSON with {"error": {message, type, code, param}} (for a status ≥ 400) nor JSON /
a complete SSE stream (for a 200).

    .venv/bin/python benchmarks/gateway_fuzz.py [--examples 10000] [--seed 0]

The last line is `gateway_fuzz_bad_answers: N answers` (goal 0) after the `--examples` inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tokenomy.gateway.app import build_app
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.schema import FIELDS
from tokenomy.twin.server import running_twin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.gateway.conftest import asgi_post  # noqa: E402 - the gateway tests' in-process ASGI call

PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
ALL_FIELDS = sorted({f for fields in FIELDS.values() for f in fields})
ERROR_FIELDS = {"message", "type", "code", "param"}

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "robot"]) | json_scalars},
        optional={
            "content": st.text(max_size=60)
            | st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20) | json_scalars}),
                max_size=3,
            )
            | json_values
        },
    ),
    max_size=4,
)
plausible = {
    "model": st.sampled_from(["auto", "api", "gpt-4", ""]) | json_scalars,
    "messages": messages | json_values,
    "prompt": st.text(max_size=40)
    | st.lists(st.text(max_size=10), max_size=5)
    | st.lists(st.integers(0, 50_000), max_size=5)
    | json_values,
    "input": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=5) | json_values,
    "max_tokens": st.none() | st.integers(-5, 20) | st.integers(10**6, 10**30) | json_scalars,
    "max_completion_tokens": st.none() | st.integers(-5, 20) | json_scalars,
    "n": st.integers(-2, 20) | json_scalars,
    "stream": st.sampled_from([True, False, None, 1, 0, "yes", "true"]) | json_scalars,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_scalars}) | json_values,
}
field_values = st.one_of(
    *(st.tuples(st.just(name), plausible.get(name, json_values)) for name in ALL_FIELDS),
    st.tuples(
        st.sampled_from(["api_base", "base_url", "chat_template", "url", "extra_body"]) | st.text(max_size=10),
        json_values,
    ),
)
bodies = st.builds(
    lambda base, extra: {**base, **dict(extra)},
    st.fixed_dictionaries(
        {"model": st.just("auto")},
        optional={"messages": messages, "max_tokens": st.integers(1, 8), "prompt": st.text(max_size=20)},
    ),
    st.lists(field_values, max_size=5),
)
valid_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system"]), "content": st.text(max_size=80) | st.none()},
    ),
    min_size=1,
    max_size=3,
)
valid_fields = st.fixed_dictionaries(
    {"model": st.sampled_from(["auto", "api"])},
    optional={
        "max_tokens": st.integers(1, 64) | st.none(),
        "max_completion_tokens": st.integers(1, 64) | st.none(),
        "stream": st.booleans() | st.none(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}) | st.none(),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=2),
        "seed": st.integers(0, 2**31),
        "user": st.text(max_size=10),
        "n": st.just(1),
        "logit_bias": st.dictionaries(st.integers(0, 1000).map(str), st.integers(-100, 100), max_size=2),
    },
)
valid_bodies = st.one_of(
    st.builds(lambda f, m: {**f, "messages": m}, valid_fields, valid_messages),
    st.builds(lambda f, p: {**f, "prompt": p}, valid_fields, st.text(min_size=1, max_size=80)),
    st.builds(lambda f, i: {"model": "api", "input": i}, valid_fields, st.text(min_size=1, max_size=40)),
)
raw_bodies = st.one_of(
    valid_bodies.map(lambda b: json.dumps(b).encode()),
    valid_bodies.map(lambda b: json.dumps(b).encode()),
    bodies.map(lambda b: json.dumps(b).encode()),
    bodies.map(lambda b: json.dumps(b).encode()[: max(len(json.dumps(b)) // 2, 1)]),  # truncated
    json_values.map(lambda v: json.dumps(v).encode()),  # not an object (mostly)
    st.sampled_from(
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"model": "auto", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            b'{"model": "auto", "max_tokens": NaN}',
            b'{"model": "auto", "temperature": Infinity}',
            b"\xff\xfe{}",
            b"",
            b'{"model": "auto", "stream_options": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}',
        ]
    ),
    st.binary(max_size=64),
)


async def call(
    app: Any, path: str, raw: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], bytes]:
    """One POST into the ASGI app (the gateway tests' asgi_post), given 30 s: (status, headers, body)."""
    return await asyncio.wait_for(asgi_post(app, path, raw, headers), timeout=30)


def verdict(status: int, headers: dict[str, str], body: bytes) -> str:
    """'' for a good answer, else what is wrong with it."""
    if status >= 500 or status == 0:
        return f"HTTP {status}"
    if headers.get("content-type", "").startswith("text/event-stream"):
        return "" if status == 200 and body.rstrip().endswith(b"data: [DONE]") else "incomplete stream"
    try:
        answer = json.loads(body)
    except ValueError:
        return "not JSON"
    if status >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict) or not ERROR_FIELDS <= set(error):
            return "not an OpenAI error"
    return ""


class Fuzz:
    """A gateway app (started) with a twin upstream, and a tally of its answers."""

    def __init__(self, state_dir: Path, twin_url: str):
        config = parse_config(
            {
                "state_dir": str(state_dir),
                "tiers": [
                    {
                        "name": "api",
                        "url": f"{twin_url}/v1",
                        "model": "api",
                        "classes": ["simple", "complex"],
                        "usd_per_mtok_input": 1.0,
                        "usd_per_mtok_output": 2.0,
                    }
                ],
                "limits": {"max_tokens": 64, "default_max_tokens": 8},
                "circuit": {"failures_to_open": 1000},  # a refused fuzz request must not hide the next ones
            }
        )
        self.app = build_app(config)
        self.gateway = self.app.state.gateway
        _, key = self.gateway.keys.create("fuzz")
        self.headers = [(b"authorization", f"Bearer {key}".encode())]
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.gateway.start())
        self.statuses: Counter[int] = Counter()
        self.bad: list[tuple[str, str, bytes, bytes]] = []
        self.runs = 0

    def one(self, path: str, raw: bytes) -> str:
        status, headers, body = self.loop.run_until_complete(call(self.app, path, raw, self.headers))
        self.runs += 1
        self.statuses[status] += 1
        why = verdict(status, headers, body)
        if why:
            self.bad.append((why, path, raw[:300], body[:300]))
        return why

    def close(self) -> None:
        self.loop.run_until_complete(self.gateway.stop())
        self.loop.close()


def run_fuzz(examples: int, seed_value: int, state_dir: Path) -> Fuzz:
    """Run `examples` hypothesis inputs through a gateway in front of a twin; returns the tally."""
    with running_twin("llama-3.1-8b", served_model_name="api", speedup=10_000.0) as twin_url:
        fuzz = Fuzz(state_dir, twin_url)

        @seed(seed_value)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(path=st.sampled_from(PATHS), raw=raw_bodies)
        def check(path: str, raw: bytes) -> None:
            fuzz.one(path, raw)  # tallied, not asserted: every input runs

        try:
            check()
        finally:
            fuzz.close()
    return fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fuzz = run_fuzz(args.examples, args.seed, Path(tmp))
    elapsed = time.perf_counter() - started
    print(f"inputs: {fuzz.runs} in {elapsed:.1f} s; statuses: {dict(sorted(fuzz.statuses.items()))}")
    for why, path, raw, body in fuzz.bad[:20]:
        print(f"  BAD ({why}) {path} {raw!r} -> {body!r}", file=sys.stderr)
    print(f"gateway_fuzz_bad_answers: {len(fuzz.bad)} answers")


if __name__ == "__main__":
    main()
