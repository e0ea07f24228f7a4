"""One streamed request to an OpenAI-compatible endpoint, timed chunk by chunk, and its SSE parsing.

The hot loop does the least per chunk: one `time.perf_counter()` per network read (every event in a
read arrived together), split the bytes into lines, `json.loads` each `data:` line and take its text;
token counting and every statistic wait until the run is over. Requests go through the gateway's lean
HTTP/1.1 client (`tokenomy.http1`: pooled keep-alive connections, httptools parsing), which spends
a fraction of httpx's CPU per streamed response; it reads no proxy settings from the environment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tokenomy import http1

ERROR_KINDS = ("connect", "http", "timeout", "stream_cut", "bad_chunk", "stream_error")
# connect: no response (refused, reset before headers, DNS); http: a status other than 200;
# timeout: connect/read/write/pool timeout; stream_cut: the body ended or broke before [DONE] and
# before any finish_reason; bad_chunk: a data line that is not JSON or not a completion chunk;
# stream_error: the server sent an {"error": …} event inside the stream.
ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


def normalise_base_url(url: str) -> str:
    """'http://h:8000', 'http://h:8000/', 'http://h:8000/v1/' → 'http://h:8000/v1' (the OpenAI base)."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"--url: expected an http:// or https:// URL, got '{url}'")
    for suffix in ("/chat/completions", "/completions"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base if base.endswith("/v1") else base + "/v1"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send: base URL (…/v1), served model name, API kind and key."""

    base_url: str
    model: str
    kind: str = "chat"  # chat or completions
    api_key: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.base_url + ENDPOINT_PATHS[self.kind]

    @property
    def path(self) -> str:
        """The completion route under the base URL."""
        return ENDPOINT_PATHS[self.kind]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def payload(self, prompt: str | list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        """A streaming request body: exactly max_tokens out (ignore_eos for vLLM/SGLang, min_tokens for vLLM and
        llama.cpp, which ignores ignore_eos), usage at the end; a list of chat messages is sent as they are."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "min_tokens": max_tokens,
            "temperature": 0.0,
        }
        if self.kind == "chat":
            body["messages"] = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update(self.extra_body)
        return body


@dataclass
class RequestRecord:
    """What one request did; times in seconds from the run's start (perf_counter), NaN until they happen."""

    index: int
    intended_s: float  # when the schedule wanted it sent
    input_tokens: int  # prompt tokens the workload asked for
    max_tokens: int
    sent_s: float = float("nan")
    first_token_s: float = float("nan")
    end_s: float = float("nan")  # last content chunk
    chunk_s: list[float] = field(default_factory=list)  # arrival time of every chunk that carried text
    chunk_text: list[str] = field(default_factory=list)
    chunk_usage: list[int] = field(default_factory=list)  # cumulative completion_tokens when sent per chunk
    prompt_tokens: int | None = None  # server's usage
    completion_tokens: int | None = None  # server's usage
    finish_reason: str | None = None
    error: str | None = None  # one of ERROR_KINDS
    http_status: int | None = None
    error_detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunk_s)


class SseError(ValueError):
    """A data line that is not a completion chunk."""


def chunk_content(obj: dict[str, Any], kind: str) -> tuple[str, str | None]:
    """(text, finish_reason) of one completion chunk; ('', None) for a usage-only chunk."""
    choices = obj.get("choices")
    if not choices:
        if "usage" in obj or choices == []:
            return "", None
        raise SseError(f"chunk without choices: {str(obj)[:120]}")
    c = choices[0]
    if kind == "chat":
        delta = c.get("delta") or {}
        text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or ""
    else:
        text = c.get("text") or ""
    if not isinstance(text, str):
        raise SseError(f"content is not text: {str(text)[:120]}")
    return text, c.get("finish_reason")


def new_pool(endpoint: Endpoint, timeout_s: float) -> http1.Pool:
    """Keep-alive connections to the endpoint: a timeout on connect (at most 10 s) and on each read."""
    return http1.Pool(endpoint.base_url, endpoint.headers(), connect_s=min(timeout_s, 10.0), read_s=timeout_s)


async def stream_request(
    pool: http1.Pool, endpoint: Endpoint, rec: RequestRecord, prompt: str | list[dict[str, str]], t0: float
) -> RequestRecord:
    """Send one streaming request and fill `rec` (times relative to t0); every failure ends up in rec.error."""
    body = json.dumps(endpoint.payload(prompt, rec.max_tokens)).encode()
    rec.sent_s = time.perf_counter() - t0
    try:
        resp = await pool.request("POST", endpoint.path, body)
    except TimeoutError as exc:
        rec.error, rec.error_detail = "timeout", type(exc).__name__
        return rec
    except http1.HttpError as exc:
        rec.error, rec.error_detail = "connect", f"{type(exc).__name__}: {exc}"[:300]
        return rec
    try:
        if resp.status != 200:
            detail = await resp.read()
            rec.error, rec.http_status = "http", resp.status
            rec.error_detail = detail[:300].decode("utf-8", "replace")
        else:
            await _read_events(resp, endpoint.kind, rec, t0)
    except TimeoutError as exc:
        rec.error, rec.error_detail = "timeout", type(exc).__name__
    except http1.HttpError as exc:
        rec.error, rec.error_detail = "stream_cut", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        resp.release()  # back to the pool when the body was read to its end, else the connection closes
    if rec.chunk_s:
        rec.first_token_s, rec.end_s = rec.chunk_s[0], rec.chunk_s[-1]
    return rec


def parse_events(datas: list[bytes]) -> list[Any]:
    """The JSON of several `data:` payloads; one `json.loads` for all when each is a whole object (less CPU).

    ValueError names the first payload that is not JSON.
    """
    if len(datas) > 1 and all(d[:1] == b"{" and d[-1:] == b"}" for d in datas):
        try:
            objs = json.loads(b"[" + b",".join(datas) + b"]")
            if len(objs) == len(datas):
                return objs
        except ValueError:
            pass  # one of them is broken: find which below
    out = []
    for data in datas:
        try:
            out.append(json.loads(data))
        except ValueError as exc:
            raise ValueError(f"{type(exc).__name__}: {data[:200]!r}") from None
    return out


async def _read_events(resp: http1.Response, kind: str, rec: RequestRecord, t0: float) -> None:
    """Read a 200 response's SSE events into `rec` (an error kind set in rec.error ends the reading)."""
    perf = time.perf_counter
    times, texts = rec.chunk_s, rec.chunk_text
    done = False
    tail = b""
    while raw := await resp.read_chunk():  # one network read: every event in it arrived now
        now = perf() - t0
        *lines, tail = (tail + raw).split(b"\n")
        datas = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event: and id: fields
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True  # read on to the end of the body, so the connection is kept alive
            else:
                datas.append(data)
        if not datas:
            continue
        try:
            objs = parse_events(datas)
        except ValueError as exc:
            rec.error, rec.error_detail = "bad_chunk", str(exc)
            return
        for obj in objs:
            try:
                if "error" in obj and "choices" not in obj:
                    rec.error, rec.error_detail = "stream_error", str(obj["error"])[:300]
                    return
                text, finish = chunk_content(obj, kind)
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                rec.error, rec.error_detail = "bad_chunk", f"{type(exc).__name__}: {str(obj)[:200]}"
                return
            usage = obj.get("usage")
            if usage:
                rec.prompt_tokens = usage.get("prompt_tokens", rec.prompt_tokens)
                rec.completion_tokens = usage.get("completion_tokens", rec.completion_tokens)
            if text:
                times.append(now)
                texts.append(text)
                if usage and rec.completion_tokens is not None:
                    rec.chunk_usage.append(int(rec.completion_tokens))
            if finish:
                rec.finish_reason = finish
    if not done and rec.finish_reason is None:
        rec.error, rec.error_detail = "stream_cut", "the stream ended before [DONE]"
