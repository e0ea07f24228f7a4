"""Turn GPUStack's performance-lab pages into a tokenomy measurement CSV (vLLM, SGLang and TensorRT-LLM as served).

GPUStack (github.com/gpustack/gpustack, `docs/performance-lab/<model>/<gpu>.md`) benchmarks each engine's OpenAI
server with `vllm bench serve` and prints the client's full result block after every serving command it tried:
ShareGPT (1,000 prompts) and random prompts of fixed length (32000/100, 4000/200, 2000/100, 128/4 tokens in/out),
every prompt sent at once (the client's default request rate, inf), or through `--max-concurrency C` on its latency
pages. One row per metric of a result this keeps:

* a model in the catalogue: gpt-oss-120b and gpt-oss-20b (OpenAI's MXFP4 checkpoints), Qwen3 8B / 14B / 32B and
  Qwen3-235B-A22B (bf16; the `-FP8` checkpoints are Qwen's block-scaled FP8), DeepSeek-R1-0528 (DeepSeek-V3's
  architecture, its own block-scaled FP8);
* an NVIDIA accelerator the page names with its memory (H100 SXM, H200 SXM, A100 SXM 80GB);
* a serving command whose settings the engine profile models: the model, tensor / pipeline parallel size, a
  context cap, `--quantization fp8`, `--kv-cache-dtype`; any other flag or environment setting (async scheduling,
  token budgets, expert parallelism, DP attention, speculative decoding, attention backends, CUDA-graph sizes) is
  a configuration the profile does not take, so its results are dropped with the flag named;
* every request of a random-prompt run generated its full output (total generated tokens = requests × osl):
  where outputs ended at an end-of-sequence token the lengths are not known; ShareGPT runs are kept as `sharegpt`
  (each request's output capped at the dataset's completion, as the client sends it).

Rows carry load kind `burst` (all `load_value` requests sent at once to a server running its own defaults) or
`concurrency`, the engine version the page lists, num_gpus = tp × pp (one replica; the node's other GPUs idle).

Run: python scripts/import_gpustack.py PAGES_DIR benchmarks/data/gpustack_serving.csv --commit SHA
     (PAGES_DIR: a checkout's docs/performance-lab; prints what it kept and dropped, with reasons)
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tokenomy.calibrate.measurements import COLUMNS

REPO = "gpustack/gpustack"
# Checkpoint name (lower case, path and organisation stripped) -> (catalogue model, precision).
CHECKPOINTS = {
    "gpt-oss-120b": ("gpt-oss-120b", "mxfp4-experts"),
    "gpt-oss-20b": ("gpt-oss-20b", "mxfp4-experts"),
    "qwen3-8b": ("qwen3-8b", "bf16"),
    "qwen3-8b-fp8": ("qwen3-8b", "fp8-block"),
    "qwen3-14b": ("qwen3-14b", "bf16"),
    "qwen3-14b-fp8": ("qwen3-14b", "fp8-block"),
    "qwen3-32b": ("qwen3-32b", "bf16"),
    "qwen3-32b-fp8": ("qwen3-32b", "fp8-block"),
    "qwen3-235b-a22b-instruct-2507": ("qwen3-235b-a22b", "bf16"),
    "qwen3-235b-a22b-instruct-2507-fp8": ("qwen3-235b-a22b", "fp8-block"),
    "deepseek-r1-0528": ("deepseek-v3", "fp8-block"),
}
# (pattern over the page's hardware line, catalogue accelerator); an A100 named without its memory is ambiguous.
ACCELERATORS = (
    (r"H100 SXM|H100 80GB HBM3", "H100-SXM"),
    (r"H200 SXM|H200x8", "H200-SXM"),  # an HGX board of eight is SXM; a bare 'H200' may be the NVL card
    (r"A100 SXM 80GB", "A100-SXM-80GB"),
)
TP_FLAGS = ("-tp", "--tensor-parallel-size", "--tp-size", "--tp", "--tp_size")
PP_FLAGS = ("-pp", "--pipeline-parallel-size", "--pp-size", "--pp_size")
MODEL_FLAGS = ("--model-path", "--model")
NEUTRAL_FLAGS = ("--host", "--port", "--max-model-len", "--max_seq_len", "--served-model-name")
NEUTRAL_SWITCHES = ("--trust-remote-code",)
RESULT_KEYS = {
    "Successful requests": "requests",
    "Maximum request concurrency": "concurrency",
    "Total input tokens": "input_tokens",
    "Total generated tokens": "output_tokens",
    "Output token throughput (tok/s)": "output_throughput",
    "Mean TTFT (ms)": "mean_ttft",
    "Mean TPOT (ms)": "mean_tpot",
    "Mean ITL (ms)": "mean_itl",
    "Mean Latency(s)": "mean_latency",  # printed by another client, whose concurrency line is not its setting
}
METRICS = (("output_throughput", "tokens/s"), ("mean_ttft", "ms"), ("mean_tpot", "ms"), ("mean_itl", "ms"))
METRIC_KEYS = tuple(metric for metric, _ in METRICS)
RANDOM_CASES = ((32000, 100), (4000, 200), (2000, 100), (128, 4))  # the pages' random datasets (isl, osl)
# `--num-prompts` of the pages' runs per dataset (isl of a random one; 0: ShareGPT) and load: fewer successful
# requests means some failed. ShareGPT at a fixed concurrency sends 100.
RUN_REQUESTS = {(0, "burst"): 1000, (0, "concurrency"): 100, (32000, "burst"): 100, (4000, "burst"): 500,
                (2000, "burst"): 500, (128, "burst"): 1000}  # fmt: skip
ENGINE_WORDS = (  # how a section heading names an engine; the client 'vllm bench' names none
    (r"\bvllm\b(?! bench)", "vllm"),
    (r"\bsglang\b", "sglang"),
    (r"\b(tensorrt-llm|trt-llm|trtllm)\b", "tensorrt-llm"),
)
SHAREGPT_MEAN_INPUT = (150.0, 300.0)  # tokens per prompt of the client's ShareGPT sample (215 for 1,000 prompts)


@dataclass
class Page:
    """What one page says about its setup."""

    path: str
    gpu: str  # catalogue id, or "" with `why` set
    engines: dict[str, str] = field(default_factory=dict)  # engine -> version
    why: str = ""
    model: str = ""  # the model the page is about ('Qwen3-32B'), as its "### Model" section names it


@dataclass
class Result:
    """One client result block with the serving command and section it ran under."""

    page: Page
    section: str
    command: str
    label: str  # the comment line above the block ('# random 4K input'), lower case, or ''
    values: dict[str, float]
    line: int
    header: bool = True  # False: a block without vllm bench's "Serving Benchmark Result" header


def read_page(path: Path, name: str) -> tuple[Page, list[Result]]:
    """The page's setup and every result block in it, in order."""
    lines = path.read_text().splitlines()
    page = Page(name, "", model=_after_heading(lines, "### Model"))
    hardware = _after_heading(lines, "### Hardware")
    match = next((gpu for pat, gpu in ACCELERATORS if re.search(pat, hardware)), None)
    if match is None:
        page.why = f"accelerator '{hardware.strip()}' is not a catalogue one named with its form factor and memory"
    page.gpu = match or ""
    for line in _section_lines(lines, "### Engine Version"):
        m = re.match(r"\s*-\s*(vLLM|SGLang|TensorRT-LLM)\s*:?\s*(v?[\w.]+)", line)
        if m:
            page.engines.setdefault(m.group(1).lower(), m.group(2))
    results: list[Result] = []
    section, command, label, block, header, in_command = "", "", "", None, True, False
    for i, raw in enumerate(lines, start=1):
        text = raw.strip()
        if text.startswith("#") and not raw.startswith(" "):
            section, label = text.lstrip("# ").strip(), ""
            continue
        if "serving script" in text.lower():
            in_command, command, label = True, "", ""
            continue
        if in_command:
            if text.startswith("```") and command:
                in_command = False
            elif text.startswith("export "):  # an environment setting on its own line: it precedes the command
                command = f"{text[len('export ') :].strip()} {command}".strip()
            elif text and not text.startswith(("```", "#")):  # a comment in the script is not part of the command
                command = f"{command} {text.rstrip(chr(92)).strip()}".strip()
            continue
        if text.startswith("#") and block is None:
            label = text.lstrip("# ").strip().lower()
        elif "Serving Benchmark Result" in text:
            block, header = {}, True
        elif block is None and text.startswith("Successful requests"):  # a result without vllm bench's header
            block, header = {}, False
        if block is not None and ":" in text and not text.startswith("="):
            key, _, value = text.rpartition(":")
            if key.strip() in RESULT_KEYS:
                try:
                    block[RESULT_KEYS[key.strip()]] = float(value)
                except ValueError:
                    pass
        elif block is not None and (text.startswith("=") or text.startswith("```")) and block:
            results.append(Result(page, section, command, label, block, i, header))
            block = None
    return page, results


def _section_lines(lines: list[str], heading: str) -> list[str]:
    """The lines under a heading, up to the next heading."""
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == heading), len(lines))
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def _after_heading(lines: list[str], heading: str) -> str:
    """The first non-empty line under a heading (a Markdown link's text), or '' when the next heading comes first."""
    text = next((x.strip() for x in _section_lines(lines, heading) if x.strip()), "")
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)


@dataclass(frozen=True)
class Serving:
    """A serving command as the profile can run it."""

    engine: str
    model: str
    precision: str
    tp: int
    pp: int
    kv_precision: str
    checkpoint: str  # the path the command names ('Qwen/Qwen3-32B-FP8')


def serving(command: str) -> Serving | str:
    """The engine, model and layout a serving command runs, or why its results cannot be modelled."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"serving command does not parse ({exc})"
    if words and "=" in words[0] and not words[0].startswith("-"):
        return f"environment setting {words[0].split('=')[0]}"
    if words[:2] == ["vllm", "serve"]:
        engine, rest = "vllm", words[2:]
    elif words[:3] == ["python3", "-m", "sglang.launch_server"]:
        engine, rest = "sglang", words[3:]
    elif words[:1] == ["trtllm-serve"]:
        engine, rest = "tensorrt-llm", words[1:]
    else:
        return f"engine command '{' '.join(words[:2])}' has no profile"
    model, tp, pp, quant, kv = "", 1, 1, "", "auto"
    k = 0
    while k < len(rest):
        word = rest[k]
        flag, eq, inline = word.partition("=")
        if not flag.startswith("-"):
            if model:
                return f"argument '{word}' not understood"
            model, k = word, k + 1
            continue
        if flag in NEUTRAL_SWITCHES:
            k += 1
            continue
        value = inline if eq else (rest[k + 1] if k + 1 < len(rest) else "")
        k += 1 if eq else 2
        if flag in TP_FLAGS + PP_FLAGS:
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                return f"serving flag {flag}: '{value}' is not a positive whole number"
            tp, pp = (int(value), pp) if flag in TP_FLAGS else (tp, int(value))
        elif flag in MODEL_FLAGS:
            model = value
        elif flag == "--quantization" and value == "fp8":
            quant = "fp8"
        elif flag == "--kv-cache-dtype":
            kv = value
        elif flag not in NEUTRAL_FLAGS:
            return f"serving flag {flag}: a setting the profile does not take"
    name = model.rstrip("/").split("/")[-1].lower()
    if name not in CHECKPOINTS:
        return f"model '{model}' is not in the catalogue"
    catalogue_model, precision = CHECKPOINTS[name]
    return Serving(engine, catalogue_model, quant or precision, tp, pp, kv, model)


def lengths(r: Result) -> tuple[str, int | None, int | None] | str:
    """(dataset, isl, osl) of a result from its token totals, or why its lengths are not known."""
    n, inputs, outputs = r.values["requests"], r.values["input_tokens"], r.values["output_tokens"]
    per_input = inputs / n
    for isl, osl in RANDOM_CASES:
        if abs(per_input - isl) <= 0.02 * isl + 2:  # the client re-tokenises random prompts: a few tokens either way
            if outputs != n * osl:
                return f"random {isl}/{osl}: outputs ended at end of sequence ({outputs:.0f} of {n * osl:.0f} tokens)"
            return "fixed", isl, osl
    if "sharegpt" in r.label or SHAREGPT_MEAN_INPUT[0] <= per_input <= SHAREGPT_MEAN_INPUT[1]:
        return "sharegpt", None, None
    return f"input of {per_input:.0f} tokens per request matches no dataset the page names"


@dataclass(frozen=True)
class Kept:
    """A result as rows take it: the serving command as the profile runs it, and the lengths its requests had."""

    serving: Serving
    dataset: str  # 'fixed' or 'sharegpt'
    isl: int | None
    osl: int | None


def judge(r: Result) -> Kept | str:
    """The result as rows take it, or why it cannot be a row."""
    if r.page.why:
        return r.page.why
    if not r.header:
        return "a result block without vllm bench's header (another client's output, or a truncated one)"
    if "mean_latency" in r.values:
        return "a result of another client (request latency and P95 columns; its concurrency line is not the load)"
    missing = [k for k in ("requests", "input_tokens", "output_tokens", "output_throughput") if k not in r.values]
    if missing:
        return f"result block without {', '.join(missing)}"
    if not r.command:
        return "no serving command above the result block"
    concurrency = r.values.get("concurrency")
    if concurrency is not None and (not math.isfinite(concurrency) or concurrency < 1 or concurrency % 1):
        return f"concurrency {concurrency:g} is not a whole number of requests"
    batch = re.search(r"(?:bs=|batch size )(\d+)", r.label)  # '# BS=4', '# ShareGPT batch size 4': the client's
    if batch and float(batch.group(1)) != concurrency:  # --max-concurrency
        return f"'# {r.label}' above a result at concurrency {concurrency}"
    if r.label and not batch and not r.label.startswith(("random", "sharegpt")):
        return f"a variant noted above its result ('# {r.label}')"
    bad = [k for k in METRIC_KEYS if k in r.values and not (math.isfinite(r.values[k]) and r.values[k] > 0)]
    if bad:
        return f"{', '.join(bad)} not a positive number"
    s = serving(r.command)
    if isinstance(s, str):
        return s
    if s.engine not in r.page.engines:
        return f"the page names no {s.engine} version"
    named = [engine for pattern, engine in ENGINE_WORDS if re.search(pattern, r.section.lower())]
    if named and s.engine not in named:  # a page copied from another one's layout: which engine ran is not known
        return f"section '{r.section}' is about {' and '.join(named)} but its serving command runs {s.engine}"
    checkpoint = s.checkpoint.rstrip("/").split("/")[-1].lower()
    page_model = r.page.model.split("/")[-1].lower()
    if page_model and not checkpoint.startswith(page_model):
        return f"serving command's model '{s.checkpoint}' is not the page's model '{r.page.model}'"
    n = r.values["requests"]
    if n <= 0:
        return "no successful requests"
    found = lengths(r)
    if isinstance(found, str):
        return found
    dataset, isl, osl = found
    sent = RUN_REQUESTS.get((isl or 0, "concurrency" if concurrency else "burst"))
    if sent is not None and n != sent:
        return f"{n:.0f} successful requests of the {sent} such runs send: some failed"
    return Kept(s, dataset, isl, osl)


def rows(kept: list[tuple[Result, Kept]], commit: str) -> list[dict[str, object]]:
    """Measurement rows (COLUMNS) of the results kept, one per metric they report."""
    out: list[dict[str, object]] = []
    for r, k in kept:
        s, dataset, isl, osl = k.serving, k.dataset, k.isl, k.osl
        n = int(r.values["requests"])
        concurrency = r.values.get("concurrency")
        load = ("concurrency", int(concurrency)) if concurrency else ("burst", n)
        sent = f"{n} requests, at most {int(concurrency)} at a time" if concurrency else f"{n} requests sent at once"
        what = f"random {isl}/{osl} tokens" if dataset == "fixed" else "ShareGPT"
        source = (
            f"{REPO}:docs/performance-lab/{r.page.path} @{commit} (line {r.line}; section '{r.section}'): "
            f"`{r.command}` on {r.page.gpu}, vllm bench serve {what}, {sent}"
        )
        for metric, unit in METRICS:
            if metric not in r.values:
                continue
            out.append(
                {
                    "id": f"gs{len(out) + 1:04d}",
                    "source": source,
                    "engine": s.engine,
                    "engine_version": r.page.engines[s.engine],
                    "model": s.model,
                    "gpu": r.page.gpu,
                    "num_gpus": s.tp * s.pp,
                    "tp": s.tp,
                    "pp": s.pp,
                    "precision": s.precision,
                    "kv_precision": "" if s.kv_precision == "auto" else s.kv_precision,
                    "isl": isl or "",
                    "osl": osl or "",
                    "dataset": dataset,
                    "load_kind": load[0],
                    "load_value": load[1],
                    "metric": metric,
                    "value": r.values[metric],
                    "unit": unit,
                    "scope": "core",
                }
            )
    return out


def main(pages_dir: Path, out: Path, commit: str) -> None:
    if not pages_dir.is_dir():
        sys.exit(f"error: {pages_dir}: not a folder (give a checkout's docs/performance-lab)")
    results: list[Result] = []
    for path in sorted(pages_dir.glob("*/*.md")):
        if path.parent.name == "references":
            continue
        try:
            results += read_page(path, f"{path.parent.name}/{path.name}")[1]
        except (OSError, UnicodeDecodeError) as exc:
            sys.exit(f"error: {path}: cannot read it ({exc})")
    verdicts = [judge(r) for r in results]
    seen: dict[tuple[str, str, tuple[tuple[str, float], ...]], int] = {}
    for i, r in enumerate(results):  # a page that prints one run twice (its summary and its own section)
        key = (r.page.path, r.command, tuple(sorted(r.values.items())))
        if isinstance(verdicts[i], Kept) and key in seen:
            verdicts[i] = f"the same run printed again (line {results[seen[key]].line} of its page)"
        seen.setdefault(key, i)
    kept = [(r, v) for r, v in zip(results, verdicts, strict=True) if isinstance(v, Kept)]
    why = [v for v in verdicts if isinstance(v, str)]
    table = rows(kept, commit)
    try:
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(table)
    except OSError as exc:
        sys.exit(f"error: {out}: cannot write it ({exc.strerror or exc})")
    print(f"{len(results)} result blocks in {pages_dir}: kept {len(kept)} ({len(table)} rows) -> {out}")
    for reason, n in Counter(why).most_common():
        print(f"  dropped {n}: {reason}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages_dir", type=Path, help="a checkout's docs/performance-lab folder")
    parser.add_argument("out", type=Path, help="the measurement CSV to write")
    parser.add_argument("--commit", default="(commit not given)", help="the checkout's commit, for the sources")
    args = parser.parse_args()
    main(args.pages_dir, args.out, args.commit)
