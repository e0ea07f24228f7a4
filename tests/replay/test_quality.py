"""Replay's quality floor per class: the lowest published score among the models that served each class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.replay.test_replay import attempt
from tokenomy.advise.quality import load_quality
from tokenomy.cli.main import app
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.ledger import Database
from tokenomy.replay.alternatives import alternative_from_file
from tokenomy.replay.compare import quality_cells
from tokenomy.replay.quality import QualityFloor, gateway_models
from tokenomy.replay.run import replay
from tokenomy.replay.sources import Replayed, read_source
from tokenomy.sim.workload import Workload

BIG, SMALL = "{model: llama-3.1-70b, gpu: H100-SXM, tp: 4, precision: fp8}", "{model: llama-3.1-8b, gpu: H100-SXM}"


def trace(n: int = 60) -> Replayed:
    """n requests, one every second, alternately of class simple and complex."""
    classes = np.array(["simple", "complex"] * (n // 2), dtype=object)
    wl = Workload(np.arange(float(n)), np.full(n, 400), np.full(n, 40), classes, name="t")
    return Replayed("trace", "t", wl, np.full(n, "(none)", dtype=object))


def fleet(tmp_path: Path, name: str, tiers: dict[str, str], routes: dict[str, str]) -> Path:
    """A fleet file: tiers by name -> YAML flow mapping (without the name), routes class -> tier."""
    lines = ["tiers:"] + [f"  - {{name: {t}, {spec.strip('{}')}}}" for t, spec in tiers.items()]
    lines += ["routes:"] + [f'  "{cls}": [{tier}]' for cls, tier in routes.items()]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def floor(rows: list, name: str, cls: str, benchmark: str = "mmlu_cot") -> QualityFloor:
    row = next(f for f in rows if f.name == name)
    return next(q for q in row.quality_floor[cls] if q.benchmark == benchmark)


def test_routing_a_class_to_a_weaker_model_lowers_its_floor_only(tmp_path: Path) -> None:
    both = {"big": BIG, "small": SMALL}
    strong = fleet(tmp_path, "strong", both, {"simple": "small", "complex": "big", "*": "big"})
    weak = fleet(tmp_path, "weak", both, {"simple": "small", "complex": "small", "*": "small"})
    alts = [alternative_from_file("strong", strong), alternative_from_file("weak", weak)]
    rows = replay(trace(), alts, None, workers=1)
    for benchmark in load_quality().benchmarks:
        hi, lo = floor(rows, "strong", "complex", benchmark), floor(rows, "weak", "complex", benchmark)
        assert hi.score is not None and lo.score is not None and lo.score < hi.score
        assert (hi.model, lo.model) == ("llama-3.1-70b fp8", "llama-3.1-8b bf16")
        assert floor(rows, "strong", "simple", benchmark) == floor(rows, "weak", "simple", benchmark)
    # a trace says nothing about what served it: the actual floor is unknown, with the reason, not 0
    actual = floor(rows, "actual", "complex")
    assert actual.score is None and "does not say what served" in actual.unknown


def test_unknown_model_precision_or_api_is_unknown_with_its_reason(tmp_path: Path) -> None:
    tiers = {
        "qwen": "{model: qwen3-8b, gpu: H100-SXM}",  # no scores in quality.yaml
        "api": "{api: OpenAI/gpt-4o-mini}",  # scores MMLU and HumanEval, not GSM8K
        "byhand": "{usd_per_mtok_input: 0.1, usd_per_mtok_output: 0.4}",
    }
    alts = [
        alternative_from_file("qwen", fleet(tmp_path, "q", tiers, {"*": "qwen"})),
        alternative_from_file("api", fleet(tmp_path, "a", tiers, {"*": "api"})),
        alternative_from_file("byhand", fleet(tmp_path, "h", tiers, {"*": "byhand"})),
        alternative_from_file("mixed", fleet(tmp_path, "m", tiers, {"simple": "api", "complex": "qwen", "*": "qwen"})),
    ]
    rows = replay(trace(), alts, None, workers=1)
    q = floor(rows, "qwen", "simple")
    assert q.score is None and q.model is None and "qwen3-8b" in q.unknown
    api = floor(rows, "api", "simple")
    assert api.score is not None and api.model == "OpenAI/gpt-4o-mini"
    no_gsm8k = floor(rows, "api", "simple", "gsm8k")
    assert no_gsm8k.score is None and "gsm8k" in no_gsm8k.unknown
    assert "priced by hand" in floor(rows, "byhand", "complex").unknown
    assert floor(rows, "mixed", "simple") == api and floor(rows, "mixed", "complex").score is None
    header, body, notes = quality_cells(rows)
    assert header[2:] == ["actual", "qwen", "api", "byhand", "mixed"]
    cell = body[[b[:2] for b in body].index(["complex", "mmlu_cot"])][header.index("qwen")]
    assert cell.startswith("unknown [") and any("qwen3-8b" in n for n in notes) and "0.0" not in cell


def test_a_quantized_tier_scores_below_its_16_bit_original_or_unknown(tmp_path: Path) -> None:
    tiers = {
        "int4": "{model: llama-3.1-8b, gpu: H100-SXM, precision: int4}",
        "bf16": SMALL,
        "nvfp4": "{model: llama-3.1-8b, gpu: B200, precision: nvfp4}",
    }
    alts = [alternative_from_file(t, fleet(tmp_path, t, tiers, {"*": t})) for t in tiers]
    rows = replay(trace(20), alts, None, workers=1)
    int4, bf16 = floor(rows, "int4", "simple"), floor(rows, "bf16", "simple")
    assert int4.score is not None and bf16.score is not None and int4.score < bf16.score
    fp4 = floor(rows, "nvfp4", "simple")
    assert fp4.score is None and "nvfp4 recovery" in fp4.unknown


GATEWAY = {
    "tiers": [
        {
            "name": "gpu",
            "url": "http://127.0.0.1:9/v1",
            "model": "llama",
            "classes": ["simple", "complex"],
            "deployment": {"model": "llama-3.1-8b", "gpu": "L4"},
        },
        {"name": "api", "url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "classes": ["complex"]},
    ]
}
BY_HAND = {"usd_per_mtok_input": 0.15, "usd_per_mtok_output": 0.6}


def test_actual_floor_from_the_ledger_and_its_gateway_config(tmp_path: Path) -> None:
    rows = [attempt(f"s{i}", 0, 1e9 + i, "t", 300, 30, request_class="simple") for i in range(10)]
    rows += [attempt(f"c{i}", 0, 1e9 + i, "t", 300, 30, request_class="complex", tier="api") for i in range(10)]
    path = tmp_path / "ledger.sqlite"
    db = Database(str(path), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    rep = read_source(str(path))
    api = fleet(tmp_path, "all_api", {"api": "{api: OpenAI/gpt-4o-mini}"}, {"*": "api"})
    alts = [alternative_from_file("api", api)]
    without = floor(replay(rep, alts, None, workers=1), "actual", "simple")
    assert without.score is None and "gateway config" in without.unknown
    # the config's API tier gives no catalogue price name: its model is unknown, the self-hosted one is not
    by_hand = {**GATEWAY, "tiers": [GATEWAY["tiers"][0], {**GATEWAY["tiers"][1], **BY_HAND}]}
    models = gateway_models(parse_config(by_hand))
    figures = replay(rep, alts, None, workers=1, actual_models=models)
    assert floor(figures, "actual", "simple").model == "llama-3.1-8b bf16"
    assert "neither a deployment nor a catalogue price name" in floor(figures, "actual", "complex").unknown
    priced = {**GATEWAY, "tiers": [GATEWAY["tiers"][0], {**GATEWAY["tiers"][1], "price": "OpenAI/gpt-4o-mini"}]}
    figures = replay(rep, alts, None, workers=1, actual_models=gateway_models(parse_config(priced)))
    assert floor(figures, "actual", "complex") == floor(figures, "api", "complex")

    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(priced))
    runner = CliRunner()
    args = ["replay", str(path), "--fleet", str(api), "--workers", "1", "--gateway-config", str(config)]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    simple = {q["benchmark"]: q for q in out["figures"][0]["quality_floor"]["simple"]}
    assert simple["mmlu_cot"]["model"] == "llama-3.1-8b bf16" and simple["mmlu_cot"]["score"] > 0
    page = tmp_path / "r.html"
    r = runner.invoke(app, [*args, "--html", str(page)])
    assert r.exit_code == 0 and "quality floor per class" in r.stdout and "unknown [1]" in r.stdout
    assert "Quality floor per class" in page.read_text() and "no published gsm8k score" in page.read_text()
    r = runner.invoke(app, ["replay", str(path), "--fleet", str(api), "--gateway-config", str(tmp_path / "no.yaml")])
    assert r.exit_code == 2 and "no.yaml" in r.output and "Traceback" not in r.output


def test_spill_to_an_api_counts_that_apis_score_in_the_floor(tmp_path: Path) -> None:
    n = 200  # a burst the GPU tier cannot start within its TTFT objective: most requests spill to the API
    wl = Workload(np.linspace(0, 2, n), np.full(n, 2000), np.full(n, 100), np.array(["complex"] * n, dtype=object))
    rep = Replayed("trace", "t", wl, np.full(n, "(none)", dtype=object))
    tiers = {"gpu": BIG.replace("}", ", ttft_slo_s: 0.5}"), "api": "{api: OpenAI/gpt-4.1-nano}"}
    rows = replay(rep, [alternative_from_file("s", fleet(tmp_path, "s", tiers, {"*": "gpu, api"}))], None, workers=1)
    assert rows[1].tier_requests["gpu"] > 0 and rows[1].tier_requests["api"] > 0
    table = load_quality()
    for benchmark in ("mmlu_cot", "humaneval"):  # the API is weaker on one, the 70B on the other
        scores = {
            "llama-3.1-70b fp8": table.model_score("llama-3.1-70b", "fp8", benchmark),
            "OpenAI/gpt-4.1-nano": table.api_score("OpenAI/gpt-4.1-nano", benchmark),
        }
        weakest = min(scores, key=lambda k: scores[k])
        assert floor(rows, "s", "complex", benchmark) == QualityFloor(benchmark, scores[weakest], weakest)
    assert {floor(rows, "s", "complex", b).model for b in ("mmlu_cot", "humaneval")} == set(scores)
