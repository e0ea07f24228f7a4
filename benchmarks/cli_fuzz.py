"""Property-based fuzz of the `tokenomy` command line: random options for every command, no traceback ever.

Hypothesis draws a command and a handful of its options with hostile values (negative, zero, NaN, infinities,
huge, non-numeric, empty; malformed JSON/YAML/CSV files) and runs it in-process through typer's CliRunner with
TOKENOMY_DEBUG=1, so the top-level guard re-raises instead of hiding a crash: an invocation counts as a
traceback when any exception other than a clean exit leaves the command, or when its output shows a traceback,
raw pydantic text or an errors.pydantic.dev link. Commands that serve (twin, gateway) have their serve call
replaced by a stub; bench and watch point at a closed local port (watch for one interval).

`make test` runs a small budget of this (tests/cli/test_cli_fuzz.py); this script runs the full one.

Run: python benchmarks/cli_fuzz.py [--examples 2400] [--seed 0]
Last line: `cli_fuzz_tracebacks: N`
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BAD_OUTPUT = ("Traceback (most recent call last)", "errors.pydantic.dev", "validation error for")


def _numbers() -> st.SearchStrategy[str]:
    """Numbers as a user might type them, hostile ones included."""
    return st.one_of(
        st.integers(-3, 4000).map(str),
        st.sampled_from(["0", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e309", "1e-12", "0.5", "1.5", "2", "abc", ""]),
        st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    )


def _small_counts() -> st.SearchStrategy[str]:
    """Request counts kept small so that runs stay quick, plus the hostile values."""
    return st.one_of(st.integers(-2, 60).map(str), st.sampled_from(["0", "-5", "nan", "x", "1e3"]))


def _lengths() -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "128",
            "0",
            "-3",
            "uniform:100:50",
            "uniform:A:B",
            "uniform:10:200",
            "lognormal:200:0.5",
            "lognormal:-1:0",
            "lognormal:nan:1",
            "empirical:/nonexistent",
            "sharegpt",
            "[bold]x[/]",
            ":100:",
            "1e9",
            "",
        ]
    )


def _rates_list() -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.sampled_from(["1", "5", "-1", "0", "nan", "inf", "x", ""]), min_size=1, max_size=3).map(",".join),
        st.just("24x"),
    )


@dataclass
class Files:
    """Malformed (and a few valid) input files the fuzz passes wherever a command reads a file."""

    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def make(self) -> Files:
        cfg = json.loads(
            (Path(__file__).resolve().parents[1] / "src/tokenomy/catalog/data/models/llama-3.2-1b.json").read_text()
        )
        texts = {
            "empty.json": "",
            "list.json": "[1, 2]",
            "broken.json": '{"hidden_size": 2048,',
            "zero_kv.json": json.dumps({**cfg, "num_key_value_heads": 0}),
            "odd_kv.json": json.dumps({**cfg, "num_key_value_heads": 3}),
            "neg_layers.json": json.dumps({**cfg, "num_hidden_layers": -2}),
            "tiny_hidden.json": json.dumps({**cfg, "hidden_size": 4, "head_dim": None}),
            "float_heads.json": json.dumps({**cfg, "num_attention_heads": 31.5}),
            "string_vocab.json": json.dumps({**cfg, "vocab_size": "big"}),
            "empty.yaml": "",
            "scalar.yaml": "42\n",
            "list.yaml": "- a\n- b\n",
            "broken.yaml": "tiers: [\n",
            "fleet_badfield.yaml": "tiers:\n  - name: a\n    model: llama-3.2-1b\n    replicas: -1\n"
            "routes: {'*': [a]}\n",
            "fleet_unknown.yaml": "tiers:\n  - name: a\n    model: nope\nroutes: {'*': [b]}\n",
            "fleet_nan.yaml": "tiers:\n  - name: a\n    api: x/y\n    usd_per_mtok_input: .nan\n    "
            "usd_per_mtok_output: 1\nroutes: {'*': [a]}\n",
            "workload_int.yaml": "volume: {requests_per_day: 1000}\nclasses:\n  c: {share: 1, isl: 800, osl: 100}\n"
            "candidates: {models: [llama-3.1-8b], gpus: [L4], precisions: [fp8], apis: []}\n",
            "workload_bad.yaml": "volume: {requests_per_day: -5}\nclasses: {c: {share: 0, isl: [1]}}\n",
            "workload_unknown.yaml": "volume: {requests_per_day: 10}\nclasses: {c: {share: 1}}\n"
            "candidates: {models: [nope], gpus: [H100-SXM]}\n",
            "gateway_bad.yaml": "tiers: [{name: a}]\n",
            "short.csv": "broken,line\n",
            "header_only.csv": "engine,model,gpu,tp,precision,isl,osl,concurrency\n",
            "binary.bin": "\x00\x01\x02\xff",
            "trace_bad.jsonl": '{"input_tokens": -1, "output_tokens": "x"}\nnot json\n',
            "accel_bad.yaml": "accelerators:\n  - id: X\n    memory_gb: -1\n",
            "profile_bad.json": '{"name": "p", "bw_efficiency": 7}',
        }
        for name, text in texts.items():
            path = self.root / name
            path.write_text(text)
            self.paths[name] = path
        self.paths["missing.json"] = self.root / "missing.json"
        self.paths["dir"] = self.root
        return self

    def any(self, suffixes: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
        names = [n for n in self.paths if not suffixes or n.endswith(suffixes) or n in ("missing.json", "dir")]
        return st.sampled_from([str(self.paths[n]) for n in names])


def command_options(files: Files) -> dict[str, tuple[list[str], dict[str, st.SearchStrategy[str]]]]:
    """Per command: the fixed arguments that keep it quick, and a strategy per option it takes."""
    models = st.one_of(
        st.sampled_from(["llama-3.2-1b", "llama-3.1-8b", "qwen3-30b-a3b", "smollm2-135m", "nope", "[red]x", ""]),
        files.any((".json",)),
    )
    gpus = st.sampled_from(["H100-SXM", "L4", "A10G", "h100", "NOPE", ":100:", ""])
    precisions = st.sampled_from(["native", "fp8", "int4", "bf16", "fp4x", "fp8,int4", ",", "q4_1"])
    engines = st.one_of(st.sampled_from(["vllm", "sglang", "generic", "llama.cpp", "nope"]), files.any((".json",)))
    numbers = _numbers()
    deployment = {
        "--model": models,
        "--gpu": gpus,
        "--tp": numbers,
        "--pp": numbers,
        "--precision": precisions,
        "--kv-precision": st.sampled_from(["auto", "fp8", "bf16", "int3", ""]),
        "--engine": engines,
        "--accelerators": files.any((".yaml",)),
    }
    return {
        "plan": (
            [],
            {
                **deployment,
                "--gpus": numbers,
                "--isl": numbers,
                "--osl": numbers,
                "--utilisation": numbers,
                "--pricing": st.sampled_from(["on_demand", "reserved", "spot"]),
                "--usd-per-gpu-hour": numbers,
                "--max-context": numbers,
                "--json": st.just(""),
            },
        ),
        "simulate": (
            ["--num-requests", "30"],
            {
                **deployment,
                "--isl": _lengths(),
                "--osl": _lengths(),
                "--rate": numbers,
                "--burstiness": numbers,
                "--concurrency": numbers,
                "--num-requests": _small_counts(),
                "--trace": st.one_of(st.sampled_from(["azure-conv", "nope"]), files.any((".jsonl", ".csv"))),
                "--time-scale": numbers,
                "--daily-rates": _rates_list(),
                "--classes": st.sampled_from(["chat=0.7,batch=0.3", "a=-1", "a=x", "=", "a=nan"]),
                "--seed": numbers,
                "--scheduler": st.sampled_from(["static", "continuous", "chunked", "fifo"]),
                "--kv": st.sampled_from(["paged", "contiguous", "x"]),
                "--block-size": numbers,
                "--max-num-seqs": numbers,
                "--max-batched-tokens": numbers,
                "--draft-model": st.sampled_from(["llama-3.2-1b", "nope"]),
                "--draft-tokens": numbers,
                "--acceptance": numbers,
                "--slo-ttft": numbers,
                "--slo-tpot": numbers,
                "--fleet": files.any((".yaml",)),
                "--compare-day": st.just(""),
                "--sweep-rates": st.sampled_from(["5,-1", "nan", "0", "x,1", "1e9"]),
                "--json": st.just(""),
            },
        ),
        "catalog": ([], {"": st.sampled_from(["models", "gpus", "apis", "engines", "nope", "[b]x", ""])}),
        "plan-chain": (
            [],
            {
                "--tier": st.one_of(
                    st.sampled_from(["small:usd=0.001,pass=0.7", "big:usd=0.01,pass=1", "x", "a:usd=-1,pass=0.5"]),
                    st.tuples(st.sampled_from(["a", "", "[b]"]), numbers, numbers).map(
                        lambda t: f"{t[0]}:usd={t[1]},pass={t[2]}"
                    ),
                ),
                "--from-ledger": files.any((".yaml",)),
                "--json": st.just(""),
            },
        ),
        "advise": (
            [
                "--models",
                "llama-3.1-8b",
                "--gpus",
                "L4",
                "--precisions",
                "fp8",
                "--verify",
                "1",
                "--sim-requests",
                "100",
            ]
            + ["--requests-per-day", "500"],
            {
                "": files.any((".yaml",)),
                "--requests-per-day": st.one_of(
                    st.sampled_from(["100", "2000"]), numbers.filter(lambda x: x[:1] in "-0n")
                ),
                "--sim-requests": st.sampled_from(["100", "0", "-1", "x"]),
                "--verify": st.sampled_from(["1", "0", "-3"]),
                "--executor": st.sampled_from(["local", "nope"]),
                "--seed": numbers,
                "--json": st.just(""),
            },
        ),
        "validate": ([], {"": files.any((".csv", ".bin", ".json")), "--worst": numbers, "--json": st.just("")}),
        "calibrate": ([], {"": files.any((".csv", ".bin")), "--engine": engines}),
        "twin": (
            ["--port", "0"],
            {
                **deployment,
                "--speedup": numbers,
                "--fail": st.sampled_from(["refuse", "cut", "stall", "nope"]),
                "--after-tokens": numbers,
                "--block-size": numbers,
                "--max-num-seqs": numbers,
                "--default-max-tokens": numbers,
                "--max-model-len": numbers,
                "--answer-pass-rate": numbers,
                "--answer-pass-rate-by-type": st.sampled_from(["arithmetic=0.5", "x", "a=nan", "a=2"]),
            },
        ),
        "ledger report": ([], {"--config": files.any((".yaml",))}),
        "gateway": ([], {"--config": files.any((".yaml",)), "--port": numbers, "--workers": numbers}),
        "replay": (
            [],
            {
                "": files.any((".jsonl", ".csv", ".db", ".yaml")),
                "--fleet": files.any((".yaml",)),
                "--slo-ttft": numbers,
                "--slo-tpot": numbers,
                "--seed": numbers,
                "--workers": st.sampled_from(["1", "0", "-1", "x"]),
                "--time-scale": numbers,
                "--json": st.just(""),
            },
        ),
        "watch": (
            ["http://127.0.0.1:9", "--iterations", "1", "--interval", "0.01"],
            {
                **deployment,
                "--interval": st.sampled_from(["0.01", "0", "-1", "nan", "x"]),
                "--iterations": st.sampled_from(["1", "-1", "x"]),
                "--isl": numbers,
                "--osl": numbers,
                "--time-scale": numbers,
                "--band-itl": numbers,
                "--band-ttft": numbers,
            },
        ),
        "bench": (
            ["--url", "http://127.0.0.1:9/v1", "--num-requests", "2", "--timeout", "0.5"],
            {
                "--isl": _lengths(),
                "--osl": _lengths(),
                "--rate": numbers,
                "--concurrency": numbers,
                "--num-requests": st.sampled_from(["1", "2", "0", "-1", "nan"]),
                "--timeout": st.sampled_from(["0.5", "0", "-1", "nan"]),
                "--burstiness": numbers,
                "--slo": st.sampled_from(["ttft_p99<=2s", "x", "ttft_p99<=-1s", ""]),
                "--max-error-rate": numbers,
                "--gpus": numbers,
            },
        ),
    }


def invocations(files: Files, commands: list[str] | None = None) -> st.SearchStrategy[list[str]]:
    """A command line: the command, its fixed arguments, then 1-4 fuzzed options in a random order."""
    table = command_options(files)
    names = commands or list(table)

    @st.composite
    def draw(draw_: Callable[[st.SearchStrategy[Any]], Any]) -> list[str]:
        name = draw_(st.sampled_from(names))
        fixed, options = table[name]
        picked = draw_(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=4, unique=True))
        args = [*name.split(), *fixed]
        for flag in picked:
            value = draw_(options[flag])
            if flag == "":
                args.append(value)
            elif value == "" and flag in ("--json", "--compare-day"):
                args.append(flag)
            else:
                args += [flag, value]
        return args

    return draw()


@contextmanager
def no_servers() -> Iterator[None]:
    """Stub what would serve forever (the twin's serve loop); run process pools on one thread (same results)."""
    from concurrent.futures import ThreadPoolExecutor

    with (
        mock.patch("tokenomy.cli.twin.serve", lambda *a, **k: None),
        mock.patch("tokenomy.gateway.serve.run_server", lambda *a, **k: None),
        mock.patch("uvicorn.run", lambda *a, **k: None),
        mock.patch(
            "tokenomy.sim.sweep.ProcessPoolExecutor", lambda max_workers=None, mp_context=None: ThreadPoolExecutor(1)
        ),
    ):
        yield


@dataclass
class Outcome:
    args: list[str]
    exit_code: int
    problem: str | None  # None: clean (success or one clear error line)


def run_one(args: list[str]) -> Outcome:
    """Invoke the app in-process with TOKENOMY_DEBUG=1; a problem when a traceback or raw pydantic text shows."""
    from typer.testing import CliRunner

    from tokenomy.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, args, env={"TOKENOMY_DEBUG": "1", "COLUMNS": "120"}, catch_exceptions=True)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        where = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        return Outcome(args, -1, f"{type(exc).__name__}: {exc}\n{where}")
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    for bad in BAD_OUTPUT:
        if bad in text:
            return Outcome(args, result.exit_code, f"output shows {bad!r}: {text[-400:]}")
    if result.exit_code not in (0, 1, 2, 3):
        return Outcome(args, result.exit_code, f"exit code {result.exit_code}")
    if result.exit_code != 0 and "error" not in text.lower() and "usage" not in text.lower():
        return Outcome(args, result.exit_code, f"non-zero exit with no error line: {text[-300:]!r}")
    return Outcome(args, result.exit_code, None)


def fuzz(examples: int, seed: int, files: Files, commands: list[str] | None = None) -> list[Outcome]:
    """Run `examples` random invocations; every outcome, problems included."""
    outcomes: list[Outcome] = []
    seconds: dict[str, float] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(invocations(files, commands))
    def one(args: list[str]) -> None:
        start = time.perf_counter()
        outcomes.append(run_one(args))
        seconds[args[0]] = seconds.get(args[0], 0.0) + time.perf_counter() - start

    from hypothesis import seed as hypothesis_seed

    with no_servers():
        hypothesis_seed(seed)(one)()
    SECONDS_BY_COMMAND.update(seconds)
    return outcomes


SECONDS_BY_COMMAND: dict[str, float] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2400, help="invocations in all (split over the commands)")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args()
    os.environ.setdefault("TOKENOMY_DEBUG", "1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = Files(Path(tmp)).make()
        outcomes = fuzz(ns.examples, ns.seed, files)
    problems = [o for o in outcomes if o.problem]
    by_command: dict[str, int] = {}
    for o in outcomes:
        by_command[o.args[0]] = by_command.get(o.args[0], 0) + 1
    for o in problems[:20]:
        print("PROBLEM:", " ".join(repr(a) for a in o.args))
        print("   ", o.problem.replace("\n", "\n    "))
    ok = sum(1 for o in outcomes if o.exit_code == 0)
    print(f"invocations: {len(outcomes)} ({ok} succeeded, {len(outcomes) - ok - len(problems)} refused cleanly)")
    print(
        "per command (invocations, seconds): "
        + ", ".join(f"{k} {v} {SECONDS_BY_COMMAND.get(k, 0):.0f}s" for k, v in sorted(by_command.items()))
    )
    print(f"seconds: {time.perf_counter() - start:.1f}")
    print(f"cli_fuzz_tracebacks: {len(problems)}")


if __name__ == "__main__":
    main()
