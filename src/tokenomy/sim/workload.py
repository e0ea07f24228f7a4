"""Workloads for the simulator: request lengths, arrival processes and public traces, all seeded."""

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
    "tokenomy JSONL (arrival_s, input_tokens, output_tokens, optional class and prefix_ids)"
)
LENGTH_FORMS = "N | uniform:MIN:MAX | lognormal:MEAN:SIGMA | empirical:TRACE | sharegpt"
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
    concurrency: int | None = None  # closed loop: keep this many requests in flight; arrival_s is then all zeros
    name: str = ""

    def __post_init__(self) -> None:
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(self.input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        n = len(self.arrival_s)
        if self.classes is not None:
            self.classes = np.asarray(self.classes, dtype=object)
        sizes = [len(self.input_tokens), len(self.output_tokens)]
        sizes += [len(x) for x in (self.classes, self.prefix_ids) if x is not None]
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
        )


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


def _read_azure(path: Path, rows: list[tuple], first_line: str) -> None:
    header = [h.strip() for h in next(csv.reader([first_line]))]
    cols = [header.index(c) for c in ("TIMESTAMP", "ContextTokens", "GeneratedTokens")]
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            if not rec or not "".join(rec).strip():
                continue
            if len(rec) < len(header):
                raise TraceError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(rec)}")
            t, i, o = (rec[c] for c in cols)
            tokens = _pos_int(i, where, "ContextTokens"), _pos_int(o, where, "GeneratedTokens")
            rows.append((_azure_time_s(t, where), *tokens, None, None))


def _read_jsonl(path: Path, rows: list[tuple]) -> None:
    mooncake = None
    with path.open(encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise TraceError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            if mooncake is None:
                mooncake = "timestamp" in rec and "arrival_s" not in rec
                if not mooncake and "arrival_s" not in rec:
                    raise TraceError(f"{where}: unknown trace format (keys {sorted(rec)}); accepted: {TRACE_FORMATS}")
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
            rows.append(
                (t, _pos_int(rec[keys[1]], where, keys[1]), _pos_int(rec[keys[2]], where, keys[2]), cls, prefix)
            )


def read_trace(path: str | Path, time_scale: float = 1.0, limit: int | None = None) -> Workload:
    """Read a trace file or built-in name; arrivals are sorted, multiplied by time_scale (0.5 replays twice as fast).

    Azure arrivals count from the first row; Mooncake (ms) and tokenomy JSONL arrivals are kept as given.
    `limit` keeps the first `limit` requests by arrival. A class or prefix_ids missing on some lines of a
    tokenomy JSONL reads as 'default' / ().
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
            _read_jsonl(path, rows)
        elif azure:
            _read_azure(path, rows, first_line)
        elif first_line:
            raise TraceError(f"{path}:1: unknown trace format; accepted: {TRACE_FORMATS}")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a UTF-8 text file; accepted: {TRACE_FORMATS}") from exc
    if not rows:
        raise TraceError(f"{path}: no requests in the trace")
    arrival_s = np.array([r[0] for r in rows])
    order = np.argsort(arrival_s, kind="stable")[:limit]
    if azure:  # absolute clock times: count from the first request
        arrival_s = arrival_s - arrival_s.min()
    has_cls, has_prefix = any(r[3] is not None for r in rows), any(r[4] is not None for r in rows)
    return Workload(
        arrival_s=arrival_s[order] * time_scale,
        input_tokens=np.array([r[1] for r in rows], dtype=np.int64)[order],
        output_tokens=np.array([r[2] for r in rows], dtype=np.int64)[order],
        classes=np.array([rows[i][3] or "default" for i in order], dtype=object) if has_cls else None,
        prefix_ids=[rows[i][4] or () for i in order] if has_prefix else None,
        name=name if name in BUILTIN_TRACES else path.stem,
    )


def write_trace_jsonl(workload: Workload, path: str | Path) -> None:
    """Write tokenomy JSONL (read back by read_trace); concurrency and prefix_block_tokens are not kept."""
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
        return self


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload a spec describes (trace lengths always win over isl/osl; see WorkloadSpec and the rules below).

    trace: its first num_requests requests (all of them if it has fewer), arrivals scaled by time_scale, unless
    rate or concurrency re-times them; else daily_rates: a daily profile (num_requests ignored); else concurrency:
    closed loop; else rate: Poisson or gamma; else offline. Arrivals, lengths and classes use separate streams of
    `seed`, so changing the rate does not change the lengths.
    """
    rng_arrival, rng_isl, rng_osl, rng_class = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(4)
    )
    if spec.trace is not None:
        wl = read_trace(spec.trace, spec.time_scale, limit=spec.num_requests)
        n = len(wl)
    else:
        arrival_s = daily_profile_arrivals(spec.daily_rates, rng_arrival) if spec.daily_rates else None
        n = spec.num_requests if arrival_s is None else len(arrival_s)
        input_tokens = parse_lengths(spec.isl, "input").sample(n, rng_isl)
        output_tokens = parse_lengths(spec.osl, "output").sample(n, rng_osl)
        wl = Workload(offline_arrivals(n) if arrival_s is None else arrival_s, input_tokens, output_tokens)
    if spec.concurrency is not None:
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
