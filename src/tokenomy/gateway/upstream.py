"""One upstream server: its HTTP client (with timeouts), circuit breaker, in-flight load and /metrics.

The client is tokenomy's own lean HTTP/1.1 client (tokenomy/http1.py): a pool of keep-alive connections
per upstream, the response body handed over as it arrives. (httpx polled every idle connection on each
request, and aiohttp's generality cost more CPU per streamed request than the rest of the gateway.)

The circuit breaker counts consecutive failures (connect errors, timeouts, 5xx, 429, broken
streams). One tenant must not be able to take a tier away from the others by sending requests the
upstream fails on, so a failure a request could have caused (an HTTP error, a timeout, a broken
stream) counts towards opening only once failures come from `distinct_keys_to_open` different
keys; failures no request can cause (no connection) and failing health probes count whoever sent
them. When failures reach `failures_to_open` but from too few keys, a health probe (GET /models) is
sent: if it fails too, the breaker opens. Open, the router skips the upstream; after `open_s` it is
half-open: one request is let through as a probe; success closes it, failure re-opens it. A request
whose client left ends without telling either way (`release`). Every state change is logged with
the tier's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from tokenomy.gateway.config import Circuit, TierConfig, Timeouts
from tokenomy.http1 import ConnectError, ConnectTimeout, HttpError, Pool, PoolTimeout, ReadTimeout, Response

log = logging.getLogger("tokenomy.gateway")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_KV_USAGE = "vllm:gpu_cache_usage_perc"
CLIENT_ERRORS = (HttpError, TimeoutError)  # what a failed upstream call raises


def unreachable(exc: BaseException) -> bool:
    """A failure no request can have caused: the upstream could not be reached at all."""
    return isinstance(exc, ConnectError | ConnectTimeout)


def counts_against_upstream(exc: BaseException) -> bool:
    """Whether a failed call says anything about the upstream (a full local pool does not)."""
    return not isinstance(exc, PoolTimeout)


def describe(exc: BaseException) -> str:
    """A short, key-free description of a failed upstream call (for the ledger and error events)."""
    kind = type(exc).__name__
    if isinstance(exc, TimeoutError) and not isinstance(exc, ConnectTimeout | ReadTimeout):
        kind = "Timeout"
    text = str(exc)
    return f"{kind}: {text}" if text else kind


class CircuitBreaker:
    """closed → (N consecutive failures from enough keys, or a failed probe) → open → (after open_s) → half-open:
    one request → closed or open."""

    def __init__(
        self,
        failures_to_open: int,
        open_s: float,
        clock=time.monotonic,  # noqa: ANN001
        name: str = "",
        distinct_keys_to_open: int = 1,
    ):
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.clock = clock
        self.name = name
        self.distinct_keys_to_open = distinct_keys_to_open
        self.state = CLOSED
        self.failures = 0
        self.failing_keys: set[str] = set()
        self.keyless_failures = 0  # failures no request could have caused, among the consecutive ones
        self.opened_at = 0.0
        self.probing = False
        self.transitions = 0
        self.last_reason = ""

    def allow(self) -> bool:
        """May a request go to this upstream now? In half-open state only the one probe may."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self.clock() - self.opened_at >= self.open_s:
            self._move(HALF_OPEN, f"{self.open_s:g} s open: letting one request through")
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = self.keyless_failures = 0
        self.failing_keys.clear()
        self.probing = False
        if self.state != CLOSED:
            self._move(CLOSED, "a request succeeded")

    def failure(self, key: str | None = None, what: str = "") -> bool:
        """Count a failure: `key` is the API key whose request failed, None when no request could have caused it
        (no connection, a failed health probe). True when a health probe should decide (too few keys failing)."""
        self.failures += 1
        self.probing = False
        if key is None:
            self.keyless_failures += 1
        else:
            self.failing_keys.add(key)
        if self.state == HALF_OPEN:
            self._open(f"the half-open probe failed: {what}" if what else "the half-open probe failed")
            return False
        if self.state == CLOSED and self.failures >= self.failures_to_open:
            if self.keyless_failures or len(self.failing_keys) >= self.distinct_keys_to_open:
                keys = len(self.failing_keys)
                self._open(
                    f"{self.failures} consecutive failures from {keys} key(s)" + (f"; last: {what}" if what else "")
                )
                return False
            return True
        return False

    def probe_failed(self, what: str) -> None:
        """A health probe failed: the upstream is down for everyone."""
        if self.state != OPEN:
            self._open(f"health probe failed: {what}")

    def release(self) -> None:
        """A request ended without telling whether the upstream works (the client left): allow another probe."""
        self.probing = False

    def _open(self, why: str) -> None:
        self.opened_at = self.clock()
        self._move(OPEN, why)

    def _move(self, state: str, why: str = "") -> None:
        log.warning(
            "tier %s: circuit breaker %s → %s%s", self.name or "?", self.state, state, f" ({why})" if why else ""
        )
        self.state = state
        self.last_reason = why
        self.transitions += 1


@dataclass
class Load:
    """Requests this gateway has in flight to an upstream, and what the upstream's /metrics last said."""

    waiting: int = 0  # sent, no first token yet
    waiting_prompt_tokens: int = 0
    decoding: int = 0  # first token seen, not finished
    decoding_context_tokens: int = 0
    reported_running: float | None = None  # from the upstream's /metrics
    reported_waiting: float | None = None
    reported_kv_usage: float | None = None
    mean_prompt_tokens: float = 512.0  # moving average of prompts sent here
    mean_output_tokens: float = 256.0
    tokens_per_estimate: float = 1.0  # actual prompt tokens (from usage) / the gateway's estimate
    reported_at: float = field(default=0.0)

    @property
    def in_flight(self) -> int:
        return self.waiting + self.decoding


class Upstream:
    """An OpenAI-compatible server behind one tier: the client, its breaker, its load."""

    def __init__(self, tier: TierConfig, timeouts: Timeouts, circuit: Circuit, api_key: str | None):
        self.name = tier.name
        self.base_url = tier.url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeouts = timeouts
        self.pool = Pool(
            self.base_url, headers, timeouts.connect_s, timeouts.read_s, max_connections=tier.max_connections
        )
        self.breaker = CircuitBreaker(
            circuit.failures_to_open,
            circuit.open_s,
            name=tier.name,
            distinct_keys_to_open=circuit.distinct_keys_to_open,
        )
        self.probe_pool = Pool(self.base_url, headers, timeouts.connect_s, circuit.probe_timeout_s)
        self.probe_s = circuit.probe_timeout_s
        self._probe: asyncio.Task | None = None
        self.load = Load()
        self.metrics_url = tier.metrics_url or (_server_root(tier.url) + "/metrics" if tier.self_hosted else None)
        self.metrics_pool = Pool(self.metrics_url, headers, timeouts.connect_s, 2.0) if self.metrics_url else None
        self._poller: asyncio.Task | None = None

    def __repr__(self) -> str:  # never shows the API key
        return f"Upstream({self.name!r}, {self.base_url!r})"

    async def post(self, path: str, body: bytes, read_s: float = 0.0) -> Response:
        """POST a JSON body to a path under the upstream's base URL; returns once the response's headers are in.
        `read_s`: the longest wait for a byte until the caller changes `Response.read_s` (default: read_s). Never
        sent twice: once it may have reached the upstream, a failure is the caller's to fail over."""
        return await self.pool.request("POST", path, body, read_s=read_s, resend=False)

    def failed(self, key: str | None, what: str) -> None:
        """Tell the breaker of a failed request (key None: no request could have caused it); probe when it asks."""
        if self.breaker.failure(key, what) and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self.probe())

    async def probe(self) -> bool:
        """A health probe, GET /models: does the upstream answer anyone? A failure opens the breaker."""
        try:
            resp = await self.probe_pool.request("GET", "/models")
            try:
                await resp.read()
            finally:
                resp.release()
            if resp.status >= 500:
                raise HttpError(f"health probe GET /models: HTTP {resp.status}")
        except CLIENT_ERRORS as exc:
            self.breaker.probe_failed(describe(exc))
            return False
        return True

    # ---- load accounting ------------------------------------------------------------------------

    def sent(self, prompt_tokens: int) -> None:
        load = self.load
        load.waiting += 1
        load.waiting_prompt_tokens += prompt_tokens
        load.mean_prompt_tokens += 0.05 * (prompt_tokens - load.mean_prompt_tokens)

    def first_token(self, prompt_tokens: int) -> None:
        load = self.load
        load.waiting -= 1
        load.waiting_prompt_tokens -= prompt_tokens
        load.decoding += 1
        load.decoding_context_tokens += prompt_tokens

    def finished(self, prompt_tokens: int, got_first_token: bool, output_tokens: int = 0) -> None:
        load = self.load
        if got_first_token:
            load.decoding -= 1
            load.decoding_context_tokens -= prompt_tokens
        else:
            load.waiting -= 1
            load.waiting_prompt_tokens -= prompt_tokens
        if output_tokens:
            load.mean_output_tokens += 0.05 * (output_tokens - load.mean_output_tokens)

    def learn_prompt_tokens(self, estimated: int, actual: int) -> None:
        """Calibrate the gateway's prompt-token estimate against what the upstream counted."""
        if estimated > 0 and actual > 0:
            load = self.load
            load.tokens_per_estimate += 0.2 * (actual / estimated - load.tokens_per_estimate)

    def scaled(self, estimated_prompt_tokens: int) -> int:
        """An estimated prompt in the upstream's own tokens."""
        return int(estimated_prompt_tokens * self.load.tokens_per_estimate)

    # ---- the upstream's own metrics -------------------------------------------------------------

    def start_polling(self, interval_s: float) -> None:
        if self.metrics_url and self._poller is None:
            self._poller = asyncio.create_task(self._poll(interval_s))

    async def _poll(self, interval_s: float) -> None:
        """Read vLLM-style gauges from the upstream's /metrics until it says there are none (404)."""
        while True:
            assert self.metrics_pool is not None
            try:
                resp = await self.metrics_pool.request("GET", "", read_s=min(interval_s, 2.0))
                text = (await resp.read()).decode(errors="replace")
                resp.release()
                if resp.status == 404:
                    return
                if resp.status == 200:
                    self._read_metrics(text)
            except CLIENT_ERRORS:
                pass  # the request path's breaker is what reacts to a dead upstream
            await asyncio.sleep(interval_s)

    def _read_metrics(self, text: str) -> None:
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("vllm:"):
                continue
            name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
            with contextlib.suppress(ValueError, IndexError):
                values[name] = values.get(name, 0.0) + float(rest.rsplit(" ", 1)[-1])
        load = self.load
        load.reported_running = values.get(VLLM_RUNNING)
        load.reported_waiting = values.get(VLLM_WAITING)
        load.reported_kv_usage = values.get(VLLM_KV_USAGE)
        load.reported_at = time.monotonic()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._probe is not None:
            self._probe.cancel()
        self.pool.close()
        self.probe_pool.close()
        if self.metrics_pool is not None:
            self.metrics_pool.close()


def _server_root(url: str) -> str:
    """http://host:port/v1 → http://host:port (where vLLM serves /metrics)."""
    return url[: -len("/v1")] if url.endswith("/v1") else url
