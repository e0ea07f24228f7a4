"""Workloads for the simulator: request lengths, arrival processes, multi-turn sessions and public traces, all seeded.

Sessions (multi-turn conversations): turn k's prompt is the shared system prompt, every earlier turn's user message
and answer, then its own message; it is sent when turn k-1's answer has arrived plus a think time (a closed loop per
session). Prompts are described by prefix ids, one per 512-token block as in the Mooncake trace format (`hash_ids`:
consecutive integers, the same integer for the same block content; ai-dynamo/dynamo benchmarks/data_generator
README, kvcache-ai/Mooncake FAST25-release/traces), so the simulator's prefix cache sees what a conversation shares.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TOKENS = 131072
TRACES_DIR = Path(__file__).parent / "data" / "traces"
BUILTIN_TRACES = {
    "azure-conv": "azure_conv_2023_sample.csv",
    "azure-code": "azure_code_2023_sample.csv",
    "mooncake-conv": "mooncake_conversation_sample.jsonl",
}
TRACE_FORMATS = (
    "Azure LLM inference CSV (TIMESTAMP,ContextTokens,GeneratedTokens); "
    "Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids); "
    "tokenomy JSONL (arrival_s, input_tokens, output_tokens, optional class, prefix_ids and session_id)"
)
PREFIX_BLOCK_TOKENS = 512  # tokens per prefix id: Mooncake's hash_ids block size
LENGTH_FORMS = "N | uniform:MIN:MAX | lognormal:MEAN:SIGMA | empirical:TRACE | sharegpt"
THINK_FORMS = "S | uniform:MIN:MAX | exponential:MEAN (seconds >= 0)"
# (mean tokens, sigma of the underlying normal) approximating ShareGPT as vLLM's benchmark_serving samples it
# (first turn, prompt <= 1024, prompt + output <= 2048, Llama-3.1 tokenizer). Means: 1000 prompts total
# 215,196 input and ~197,000 generated tokens (vllm-project/vllm PRs #8335, #14152, #14431); SGLang's run with
# ignore_eos in benchmark/benchmark_vllm_060/README.md implies ~194 output tokens per request. No published
# spread was found: sigma 1.0 (a heavy right tail) is an assumption.
SHAREGPT_INPUT = (215.0, 1.0)
SHAREGPT_OUTPUT = (197.0, 1.0)


class TraceError(ValueError):
    """A trace that cannot be read: the message names the file, the 1-based line and the field."""


@dataclass
class Workload:
    """Requests sorted by arrival: what the simulator replays."""

    arrival_s: np.ndarray  # float64, seconds, sorted ascending, >= 0
    input_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    classes: np.ndarray | None = None  # dtype object (str) per request
    prefix_ids: list[tuple[int, ...]] | None = None  # per request: ids of its leading shared prefix blocks
    prefix_block_tokens: int = 512  # tokens per prefix id (Mooncake uses 512)
    concurrency: int | None = None  # closed loop: keep this many requests (sessions, with think_s) in flight
    name: str = ""
    session_ids: np.ndarray | None = None  # int64 per request: its conversation; a session's turns in index order
    # float64 per request, seconds: with session_ids, each turn after the first is sent think_s after the previous
    # turn's answer (closed loop per session; arrival_s then holds the earliest possible time, answers taking no
    # time); None: every request at its arrival_s (a replayed trace's recorded times)
    think_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(self.input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        n = len(self.arrival_s)
        if self.classes is not None:
            self.classes = np.asarray(self.classes, dtype=object)
        if self.session_ids is not None:
            self.session_ids = np.asarray(self.session_ids, dtype=np.int64)
        if self.think_s is not None:
            self.think_s = np.asarray(self.think_s, dtype=np.float64)
            if self.session_ids is None:
                raise ValueError("workload think_s needs session_ids (whose previous turn to wait for)")
            if len(self.think_s) and not (np.all(np.isfinite(self.think_s)) and self.think_s.min() >= 0):
                raise ValueError("workload think times must be finite and >= 0")
        sizes = [len(self.input_tokens), len(self.output_tokens)]
        extra = (self.classes, self.prefix_ids, self.session_ids, self.think_s)
        sizes += [len(x) for x in extra if x is not None]
        if any(s != n for s in sizes):
            raise ValueError(f"workload fields differ in length: {n} arrivals vs {sizes}")
        if n and (self.input_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("workload token counts must all be >= 1")
        if n and (self.arrival_s[0] < 0 or np.any(np.diff(self.arrival_s) < 0)):
            raise ValueError("workload arrivals must be >= 0 and sorted ascending")

    def __len__(self) -> int:
        return len(self.arrival_s)

    def subset(self, mask_or_indices: Any) -> Workload:
        """The requests picked by a boolean mask or an index array (give indices ascending to keep arrival order)."""
        idx = np.arange(len(self))[np.asarray(mask_or_indices)]
        return Workload(
            arrival_s=self.arrival_s[idx],
            input_tokens=self.input_tokens[idx],
            output_tokens=self.output_tokens[idx],
            classes=None if self.classes is None else self.classes[idx],
            prefix_ids=None if self.prefix_ids is None else [self.prefix_ids[i] for i in idx],
            prefix_block_tokens=self.prefix_block_tokens,
            concurrency=self.concurrency,
            name=self.name,
            session_ids=None if self.session_ids is None else self.session_ids[idx],
            think_s=None if self.think_s is None else self.think_s[idx],
        )

    @property
    def closed_sessions(self) -> bool:
        """True when turns wait for the previous turn's answer (session_ids and think_s given)."""
        return self.session_ids is not None and self.think_s is not None

    def next_turns(self) -> np.ndarray:
        """Per request: the index of its session's next turn, -1 for a session's last turn (or no sessions)."""
        nxt = np.full(len(self), -1, dtype=np.int64)
        if self.session_ids is None:
            return nxt
        last: dict[int, int] = {}
        for i, sid in enumerate(self.session_ids.tolist()):
            prev = last.get(sid)
            if prev is not None:
                nxt[prev] = i
            last[sid] = i
        return nxt

    def first_turns(self) -> np.ndarray:
        """Indices of the requests that open a session (all requests when there are no sessions), ascending."""
        if self.session_ids is None:
            return np.arange(len(self))
        _, first = np.unique(self.session_ids, return_index=True)
        return np.sort(first)


# ---------------------------------------------------------------- lengths


@dataclass(frozen=True)
class LengthSpec:
    """A distribution of token counts: fixed, uniform, lognormal or empirical (values drawn from a trace)."""

    kind: str
    params: tuple[float, ...] = ()
    values: np.ndarray | None = field(default=None, repr=False)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n token counts (int64, all >= 1)."""
        if self.kind == "fixed":
            return np.full(n, int(self.params[0]), dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(int(self.params[0]), int(self.params[1]) + 1, size=n, dtype=np.int64)
        if self.kind == "lognormal":
            mean, sigma = self.params
            mu = math.log(mean) - sigma * sigma / 2  # E[exp(N(mu, sigma))] = exp(mu + sigma²/2) = mean
            return np.clip(np.rint(rng.lognormal(mu, sigma, size=n)), 1, MAX_TOKENS).astype(np.int64)
        assert self.values is not None
        return rng.choice(self.values, size=n)


def parse_lengths(text: str, what: str) -> LengthSpec:
    """Read a length distribution in CLI syntax; `what` ('input'/'isl' or 'output'/'osl') picks a trace's column."""
    flag = {"input": "isl", "output": "osl"}.get(what, what)
    kind, _, rest = text.strip().partition(":")
    try:
        if kind == "empirical" and rest:
            wl = read_trace(rest)
            return LengthSpec("empirical", values=wl.input_tokens if flag == "isl" else wl.output_tokens)
        if kind == "sharegpt" and not rest:
            return LengthSpec("lognormal", SHAREGPT_INPUT if flag == "isl" else SHAREGPT_OUTPUT)
        if not rest and int(kind) >= 1:
            return LengthSpec("fixed", (int(kind),))
        args = rest.split(":")
        if kind == "uniform" and len(args) == 2 and 1 <= int(args[0]) <= int(args[1]):
            return LengthSpec("uniform", (int(args[0]), int(args[1])))
        if kind == "lognormal" and len(args) == 2 and 1 <= float(args[0]) <= MAX_TOKENS and 0 <= float(args[1]) <= 5:
            return LengthSpec("lognormal", (float(args[0]), float(args[1])))
    except TraceError as exc:
        raise TraceError(f"{flag} '{text}': {exc}") from exc
    except ValueError:
        pass  # not a number where one is needed: the error below lists the accepted forms
    why = _length_problem(kind, rest)
    raise ValueError(
        f"{flag}: cannot read '{text}'"
        + (f": {why}" if why else "")
        + f"; accepted forms: {LENGTH_FORMS} (lengths >= 1)"
    )


def _length_problem(kind: str, rest: str) -> str:
    """What is wrong with a length form that did not parse, in words ('min 100 > max 50'); '' when unclear."""
    args = rest.split(":") if rest else []
    try:
        if kind == "uniform" and len(args) == 2:
            lo, hi = int(args[0]), int(args[1])
            return f"min {lo} > max {hi}" if lo > hi else f"lengths must be >= 1, got min {lo}" if lo < 1 else ""
        if kind == "lognormal" and len(args) == 2:
            mean, sigma = float(args[0]), float(args[1])
            if not 1 <= mean <= MAX_TOKENS:
                return f"mean {args[0]} outside 1..{MAX_TOKENS}"
            return f"sigma {args[1]} outside 0..5" if not 0 <= sigma <= 5 else ""
        if kind in ("uniform", "lognormal"):
            return f"{kind} takes two numbers after '{kind}:', got {len(args)}"
        if not rest and kind.lstrip("-").isdigit():
            return f"a length must be >= 1, got {kind}"
    except ValueError:
        return f"'{rest}' holds something that is not a number"
    return ""


# ---------------------------------------------------------------- arrivals


def _from_gaps(gaps_s: np.ndarray) -> np.ndarray:
    """Arrival times for n requests from n-1 gaps: the first request arrives at t = 0, as in benchmark_serving."""
    return np.concatenate(([0.0], np.cumsum(gaps_s)))


def poisson_arrivals(rate_per_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n arrival times (s) of a Poisson process at rate_per_s, the first at t = 0."""
    return _from_gaps(rng.exponential(1.0 / rate_per_s, size=max(n - 1, 0)))[:n]


def gamma_arrivals(rate_per_s: float, burstiness: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gamma gaps as in vLLM's benchmark_serving: shape = burstiness, mean 1/rate; 1 is Poisson, < 1 burstier."""
    gaps_s = rng.gamma(shape=burstiness, scale=1.0 / (rate_per_s * burstiness), size=max(n - 1, 0))
    return _from_gaps(gaps_s)[:n]


def offline_arrivals(n: int) -> np.ndarray:
    """All n requests at t = 0."""
    return np.zeros(n)


def daily_profile_arrivals(hourly_rates: list[float], rng: np.random.Generator, days: float = 1.0) -> np.ndarray:
    """Sorted arrival times (s) of a Poisson process whose rate (req/s) is constant within each hour of the day."""
    rates = np.asarray(hourly_rates, dtype=np.float64)
    if rates.shape != (24,) or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"daily_rates: need 24 hourly rates >= 0 (req/s), got {list(hourly_rates)}")
    if not days > 0:
        raise ValueError(f"days: must be > 0, got {days}")
    hours = np.arange(math.ceil(days * 24))
    duration_s = np.minimum(1.0, days * 24 - hours) * 3600.0
    counts = rng.poisson(rates[hours % 24] * duration_s)
    starts = np.repeat(hours * 3600.0, counts)
    return np.sort(starts + rng.random(len(starts)) * np.repeat(duration_s, counts))


# ---------------------------------------------------------------- traces


def builtin_trace(name: str) -> Path:
    """The path of a built-in sample trace: 'azure-conv', 'azure-code' or 'mooncake-conv'."""
    if name not in BUILTIN_TRACES:
        raise TraceError(f"unknown built-in trace '{name}'; built-in traces: {', '.join(BUILTIN_TRACES)}")
    return TRACES_DIR / BUILTIN_TRACES[name]


def _pos_int(value: Any, where: str, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TraceError(f"{where}: field '{name}': must be a positive integer, got {value!r}")
    return value


def _time(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}: field '{name}': must be a number >= 0, got {value!r}")
    return float(value)


def _azure_time_s(text: str, where: str) -> float:
    """'2023-11-16 18:15:46.6805900' (any number of fractional digits) as seconds since the epoch, read as UTC."""
    whole, _, frac = text.strip().partition(".")
    try:
        if frac and not frac.isdigit():
            raise ValueError(frac)
        return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError as exc:
        raise TraceError(f"{where}: field 'TIMESTAMP': cannot read {text!r} as a date and time") from exc


def _read_azure(path: Path, rows: list[tuple], first_line: str, skipped: list[str] | None) -> None:
    header = [h.strip() for h in next(csv.reader([first_line]))]
    cols = [header.index(c) for c in ("TIMESTAMP", "ContextTokens", "GeneratedTokens")]
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            if not rec or not "".join(rec).strip():
                continue
            try:
                if len(rec) < len(header):
                    raise TraceError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(rec)}")
                t, i, o = (rec[c] for c in cols)
                tokens = _pos_int(i, where, "ContextTokens"), _pos_int(o, where, "GeneratedTokens")
                rows.append((_azure_time_s(t, where), *tokens, None, None, None))
            except TraceError as exc:
                _skip_or_raise(exc, skipped)


def _skip_or_raise(exc: TraceError, skipped: list[str] | None) -> None:
    """Raise a bad line's error, or (when the caller collects them) note it as 'file:line: reason' and go on."""
    if skipped is None:
        raise exc
    skipped.append(str(exc))


def json_record(line: str, where: str) -> dict[str, Any]:
    """One JSONL line as an object (a TraceError naming file:line when it is not one)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(rec, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _jsonl_row(rec: dict[str, Any], where: str, mooncake: bool) -> tuple:
    """(arrival s, input, output, class, prefix ids, session id) of one Mooncake or tokenomy JSONL record."""
    keys = ("timestamp", "input_length", "output_length", "hash_ids")
    keys = keys if mooncake else ("arrival_s", "input_tokens", "output_tokens", "prefix_ids")
    missing = [k for k in keys[:3] if k not in rec]
    if missing:
        raise TraceError(f"{where}: field '{missing[0]}': missing")
    t = _time(rec[keys[0]], where, keys[0]) / (1000.0 if mooncake else 1.0)
    prefix = rec.get(keys[3])
    if prefix is not None:
        if not isinstance(prefix, list) or not all(type(p) is int and p >= 0 for p in prefix):
            raise TraceError(f"{where}: field '{keys[3]}': must be a list of integers >= 0, got {prefix!r}")
        prefix = tuple(prefix)
    cls = rec.get("class")
    if cls is not None and not isinstance(cls, str):
        raise TraceError(f"{where}: field 'class': must be a string, got {cls!r}")
    session = rec.get("session_id")
    if session is not None and (type(session) is not int or session < 0):
        raise TraceError(f"{where}: field 'session_id': must be an integer >= 0, got {session!r}")
    inp, out = _pos_int(rec[keys[1]], where, keys[1]), _pos_int(rec[keys[2]], where, keys[2])
    return (t, inp, out, cls, prefix, session)


def _read_jsonl(path: Path, rows: list[tuple], skipped: list[str] | None) -> None:
    mooncake = None
    with path.open(encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                rec = json_record(line, where)
            except TraceError as exc:
                _skip_or_raise(exc, skipped)
                continue
            if mooncake is None:  # the first object decides the format; an unknown one is no trace at all
                mooncake = "timestamp" in rec and "arrival_s" not in rec
                if not mooncake and "arrival_s" not in rec:
                    raise TraceError(f"{where}: unknown trace format (keys {sorted(rec)}); accepted: {TRACE_FORMATS}")
            try:
                rows.append(_jsonl_row(rec, where, mooncake))
            except TraceError as exc:
                _skip_or_raise(exc, skipped)


def read_trace(
    path: str | Path, time_scale: float = 1.0, limit: int | None = None, skipped: list[str] | None = None
) -> Workload:
    """Read a trace file or built-in name; arrivals are sorted, multiplied by time_scale (0.5 replays twice as fast).

    Azure arrivals count from the first row; Mooncake (ms) and tokenomy JSONL arrivals are kept as given.
    `limit` keeps the first `limit` requests by arrival. A class, prefix_ids or session_id missing on some lines of a
    tokenomy JSONL reads as 'default' / () / a session of its own. A bad line raises a TraceError naming file:line
    and field, or, when `skipped` is a list, is left out and noted there as 'file:line: reason'.
    """
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ValueError(f"time_scale: must be a positive number, got {time_scale}")
    name = str(path)
    path = builtin_trace(name) if name in BUILTIN_TRACES else Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file (built-in traces: {', '.join(BUILTIN_TRACES)})")
    rows: list[tuple] = []
    try:
        with path.open(encoding="utf-8-sig") as fh:
            first_line = next((line for line in fh if line.strip()), "")
        azure = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= {h.strip() for h in first_line.split(",")}
        if first_line.lstrip().startswith("{"):
            _read_jsonl(path, rows, skipped)
        elif azure:
            _read_azure(path, rows, first_line, skipped)
        elif first_line:
            raise TraceError(f"{path}:1: unknown trace format; accepted: {TRACE_FORMATS}")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a UTF-8 text file; accepted: {TRACE_FORMATS}") from exc
    if not rows:
        note = f"; {len(skipped)} bad line(s) skipped, the first: {skipped[0]}" if skipped else ""
        raise TraceError(f"{path}: no requests in the trace{note}")
    arrival_s = np.array([r[0] for r in rows])
    order = np.argsort(arrival_s, kind="stable")[:limit]
    if azure:  # absolute clock times: count from the first request
        arrival_s = arrival_s - arrival_s.min()
    has_cls, has_prefix = any(r[3] is not None for r in rows), any(r[4] is not None for r in rows)
    sessions = None
    if any(r[5] is not None for r in rows):  # a line without session_id is a conversation of its own
        lone = max(r[5] for r in rows if r[5] is not None) + 1
        sessions = np.array([rows[i][5] if rows[i][5] is not None else lone + i for i in order], dtype=np.int64)
    return Workload(
        arrival_s=arrival_s[order] * time_scale,
        input_tokens=np.array([r[1] for r in rows], dtype=np.int64)[order],
        output_tokens=np.array([r[2] for r in rows], dtype=np.int64)[order],
        classes=np.array([rows[i][3] or "default" for i in order], dtype=object) if has_cls else None,
        prefix_ids=[rows[i][4] or () for i in order] if has_prefix else None,
        name=name if name in BUILTIN_TRACES else path.stem,
        session_ids=sessions,
    )


def write_trace_jsonl(workload: Workload, path: str | Path) -> None:
    """Write tokenomy JSONL (read back by read_trace); concurrency, think times and prefix_block_tokens are not kept:
    the trace records when each turn arrived."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for i in range(len(workload)):
            rec: dict[str, Any] = {
                "arrival_s": float(workload.arrival_s[i]),
                "input_tokens": int(workload.input_tokens[i]),
                "output_tokens": int(workload.output_tokens[i]),
            }
            if workload.classes is not None:
                rec["class"] = str(workload.classes[i])
            if workload.prefix_ids is not None:
                rec["prefix_ids"] = [int(p) for p in workload.prefix_ids[i]]
            if workload.session_ids is not None:
                rec["session_id"] = int(workload.session_ids[i])
            fh.write(json.dumps(rec) + "\n")


@lru_cache(maxsize=1)
def _azure_conv_sample() -> tuple[np.ndarray, np.ndarray, float]:
    wl = read_trace("azure-conv")
    return wl.input_tokens, wl.output_tokens, (len(wl) - 1) / float(wl.arrival_s[-1] - wl.arrival_s[0])


def azure_conv_like(n: int, rng: np.random.Generator, rate_per_s: float | None = None) -> Workload:
    """n requests, (input, output) pairs resampled jointly from azure-conv; Poisson at its mean rate or rate_per_s."""
    inputs, outputs, sample_rate_per_s = _azure_conv_sample()
    idx = rng.integers(0, len(inputs), size=n)
    arrival_s = poisson_arrivals(rate_per_s or sample_rate_per_s, n, rng)
    return Workload(arrival_s, inputs[idx], outputs[idx], name="azure-conv-like")


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class ThinkTime:
    """A distribution of think times (seconds >= 0): fixed, uniform or exponential."""

    kind: str  # "fixed", "uniform" or "exponential"
    params: tuple[float, ...]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n think times (float64 seconds >= 0)."""
        if self.kind == "uniform":
            return rng.uniform(self.params[0], self.params[1], size=n)
        if self.kind == "exponential" and self.params[0] > 0:
            return rng.exponential(self.params[0], size=n)
        return np.full(n, self.params[0])


def parse_think(text: str) -> ThinkTime:
    """A think-time distribution in CLI syntax: S, uniform:MIN:MAX or exponential:MEAN (seconds)."""
    kind, _, rest = text.strip().partition(":")
    try:
        nums = [float(a) for a in rest.split(":")] if rest else [float(kind)]
    except ValueError:
        nums = []
    ok = bool(nums) and all(math.isfinite(x) and x >= 0 for x in nums)
    if ok and not rest:
        return ThinkTime("fixed", (nums[0],))
    if ok and kind == "uniform" and len(nums) == 2 and nums[0] <= nums[1]:
        return ThinkTime("uniform", (nums[0], nums[1]))
    if ok and kind == "exponential" and len(nums) == 1:
        return ThinkTime("exponential", (nums[0],))
    raise ValueError(f"think_s: cannot read '{text}'; accepted forms: {THINK_FORMS}")


def conversation_prefix_ids(
    session_ids: np.ndarray,
    input_tokens: np.ndarray,
    shared_ids: list[tuple[int, ...]] | None = None,
    block_tokens: int = PREFIX_BLOCK_TOKENS,
    first_id: int = 0,
) -> list[tuple[int, ...]]:
    """Per request, the ids of its prompt's blocks (ceil(input / block) of them, as Mooncake's hash_ids count).

    A session's prompts grow by appending (conversation so far + new message), so block j of every turn of a session
    holds the same tokens and gets one id; `shared_ids[i]` (a shared system prompt's whole blocks) lead request i's
    list; new ids count up from `first_id`.
    """
    blocks: dict[int, list[int]] = {}
    next_id = first_id
    out: list[tuple[int, ...]] = []
    for i, (sid, isl) in enumerate(zip(session_ids.tolist(), input_tokens.tolist(), strict=True)):
        ids = blocks.get(sid)
        if ids is None:
            ids = blocks[sid] = list(shared_ids[i]) if shared_ids is not None else []
        need = -(-isl // block_tokens)
        while len(ids) < need:
            ids.append(next_id)
            next_id += 1
        out.append(tuple(ids[:need]))
    return out


def session_workload(spec: WorkloadSpec, rngs: list[np.random.Generator]) -> Workload:
    """Multi-turn sessions: spec.num_requests turns in sessions of spec.turns turns (the last one cut short).

    Turn k's prompt = system prompt + (message + answer) of turns 0..k-1 + its own message of `isl` tokens; its
    answer has `osl` tokens; it is sent `think_s` after turn k-1's answer. Sessions open at the arrival process
    (rate: sessions/s; concurrency: sessions in flight; none: all at t=0). arrival_s holds each turn's earliest time
    (answers taking no time); the simulator and bench send follow-up turns when the previous answer is in.
    """
    rng_arrival, rng_isl, rng_osl, _, rng_turns, rng_think, rng_system = rngs
    n = spec.num_requests
    per_session = parse_lengths(spec.turns or "1", "turns").sample(n, rng_turns)
    n_sessions = int(np.searchsorted(np.cumsum(per_session), n)) + 1
    turns = per_session[:n_sessions].copy()
    turns[-1] -= int(turns.sum()) - n  # the last session is cut at num_requests turns
    session = np.repeat(np.arange(n_sessions), turns)
    turn = np.arange(n) - np.repeat(np.cumsum(turns) - turns, turns)  # 0, 1, ... within each session
    message = parse_lengths(spec.isl, "input").sample(n, rng_isl)
    output = parse_lengths(spec.osl, "output").sample(n, rng_osl)
    think = np.where(turn > 0, parse_think(spec.think_s).sample(n, rng_think), 0.0)
    system_of = rng_system.integers(0, spec.system_prompts, size=n_sessions)
    added = message + output  # what each turn adds to its conversation: its message and its answer
    before = np.cumsum(added) - added  # tokens added before each turn, counted over all sessions
    input_tokens = spec.system_prompt_tokens + before - np.repeat(before[turn == 0], turns) + message
    sys_blocks = spec.system_prompt_tokens // PREFIX_BLOCK_TOKENS
    shared = [tuple(range(p * sys_blocks, (p + 1) * sys_blocks)) for p in range(spec.system_prompts)]
    prefix_ids = conversation_prefix_ids(
        session, input_tokens, [shared[p] for p in system_of[session]], first_id=spec.system_prompts * sys_blocks
    )
    if spec.concurrency is not None or spec.rate is None:
        opens = offline_arrivals(n_sessions)
    elif spec.burstiness == 1.0:
        opens = poisson_arrivals(spec.rate, n_sessions, rng_arrival)
    else:
        opens = gamma_arrivals(spec.rate, spec.burstiness, n_sessions, rng_arrival)
    session_think = np.cumsum(think) - np.repeat((np.cumsum(think) - think)[turn == 0], turns)
    earliest = opens[session] + session_think
    order = np.argsort(earliest, kind="stable")
    return Workload(
        arrival_s=earliest[order],
        input_tokens=input_tokens[order],
        output_tokens=output[order],
        prefix_ids=[prefix_ids[i] for i in order],
        concurrency=spec.concurrency,
        name="sessions",
        session_ids=session[order],
        think_s=think[order],
    )


# ---------------------------------------------------------------- one entry point


class WorkloadSpec(BaseModel):
    """What to replay: a trace, or lengths (isl, osl) with an arrival process; all draws follow `seed`."""

    model_config = ConfigDict(extra="forbid")

    isl: str = "512"
    osl: str = "256"
    rate: float | None = Field(None, gt=0)  # req/s: Poisson, or gamma when burstiness != 1
    burstiness: float = Field(1.0, gt=0)
    concurrency: int | None = Field(None, ge=1)  # closed loop
    num_requests: int = Field(1000, ge=1)
    trace: str | None = None  # path or built-in name
    time_scale: float = Field(1.0, gt=0)
    daily_rates: list[float] | None = None  # 24 hourly rates, req/s
    classes: dict[str, float] | None = None  # class mix, e.g. {"chat": 0.7, "batch": 0.3}; weights normalised
    seed: int = 0
    # Sessions (see session_workload): turns per session (length forms); isl is then each turn's new message,
    # rate opens sessions (sessions/s), concurrency keeps sessions in flight, num_requests counts turns.
    turns: str | None = None
    think_s: str = "0"  # seconds from an answer to the session's next turn: S, uniform:MIN:MAX, exponential:MEAN
    system_prompt_tokens: int = Field(0, ge=0)  # a system prompt every session's prompts start with
    system_prompts: int = Field(1, ge=1)  # distinct system prompts; each session draws one

    @property
    def sessions(self) -> bool:
        """True when the spec describes sessions (turns or a shared system prompt), built by session_workload."""
        return self.turns is not None or self.system_prompt_tokens > 0

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        given = [k for k in ("rate", "concurrency", "daily_rates") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of rate, concurrency, daily_rates; got {' and '.join(given)}")
        if self.trace is not None and self.daily_rates is not None:
            raise ValueError("trace and daily_rates both set the arrivals; give one")
        if self.burstiness != 1.0 and self.rate is None:
            raise ValueError("burstiness needs a rate")
        if self.daily_rates is not None and (len(self.daily_rates) != 24 or min(self.daily_rates) < 0):
            raise ValueError(f"daily_rates: need 24 hourly rates >= 0 (req/s), got {len(self.daily_rates)} values")
        if self.classes is not None:
            w = list(self.classes.values())
            if not w or min(w) < 0 or not sum(w) > 0 or not all(map(math.isfinite, w)):
                raise ValueError(f"classes: weights must be >= 0 with a positive sum, got {self.classes}")
        return self._check_sessions()

    def _check_sessions(self) -> WorkloadSpec:
        """Sessions take their arrivals from rate, concurrency or none, and need a turns form that parses."""
        if not self.sessions:
            if self.think_s != "0":
                raise ValueError("think_s needs turns (it is the wait between a session's turns)")
            return self
        for other in ("trace", "daily_rates"):
            if getattr(self, other) is not None:
                raise ValueError(f"turns and system_prompt_tokens cannot go with {other} (a trace has its own)")
        if self.turns is not None:
            if self.turns.startswith(("empirical", "sharegpt")):
                raise ValueError(f"turns: '{self.turns}': give N, uniform:MIN:MAX or lognormal:MEAN:SIGMA")
            parse_lengths(self.turns, "turns")
        parse_think(self.think_s)
        return self


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload a spec describes (trace lengths always win over isl/osl; see WorkloadSpec and the rules below).

    turns or system_prompt_tokens: sessions (session_workload). trace: its first num_requests requests (all of them
    if it has fewer), arrivals scaled by time_scale, unless
    rate or concurrency re-times them; else daily_rates: a daily profile (num_requests ignored); else concurrency:
    closed loop; else rate: Poisson or gamma; else offline. Arrivals, lengths and classes use separate streams of
    `seed`, so changing the rate does not change the lengths.
    """
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(7)]
    rng_arrival, rng_isl, rng_osl, rng_class = rngs[:4]
    if spec.sessions:
        wl = session_workload(spec, rngs)
        n = len(wl)
    elif spec.trace is not None:
        wl = read_trace(spec.trace, spec.time_scale, limit=spec.num_requests)
        n = len(wl)
    else:
        arrival_s = daily_profile_arrivals(spec.daily_rates, rng_arrival) if spec.daily_rates else None
        n = spec.num_requests if arrival_s is None else len(arrival_s)
        input_tokens = parse_lengths(spec.isl, "input").sample(n, rng_isl)
        output_tokens = parse_lengths(spec.osl, "output").sample(n, rng_osl)
        wl = Workload(offline_arrivals(n) if arrival_s is None else arrival_s, input_tokens, output_tokens)
    if spec.sessions:
        pass  # session_workload opened the sessions at the arrival process
    elif spec.concurrency is not None:
        wl.arrival_s, wl.concurrency = offline_arrivals(n), spec.concurrency
    elif spec.rate is not None:
        wl.arrival_s = (
            poisson_arrivals(spec.rate, n, rng_arrival)
            if spec.burstiness == 1.0
            else gamma_arrivals(spec.rate, spec.burstiness, n, rng_arrival)
        )
    if spec.classes is not None and wl.classes is None:
        names = np.array(list(spec.classes), dtype=object)
        weights = np.array(list(spec.classes.values()), dtype=np.float64)
        wl.classes = rng_class.choice(names, size=n, p=weights / weights.sum())
    return wl
