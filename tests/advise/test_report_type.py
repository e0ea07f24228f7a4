"""The advisor's report is a typed AdviceReport: its schema is committed, its JSON keeps the report's keys and
order, and renderers written against the JSON shape read it like the dict it stands for."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tokenomy.results import AdviceReport, PlanResult, dumps

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "advise.schema.json"


def test_the_report_is_typed_and_validates_against_the_committed_schema(small_report) -> None:
    assert isinstance(small_report, AdviceReport)
    data = json.loads(small_report.to_json())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert list(data) == [
        "workload",
        "search",
        "recommendation",
        "estimates",
        "tolerance",
        "pareto",
        "baselines",
        "savings",
        "break_even",
        "peak_hour",
        "infeasible",
        "notes",
    ]


def test_the_schema_rejects_a_report_missing_a_stable_key(small_report) -> None:
    data = json.loads(small_report.to_json())
    del data["recommendation"]["usd_per_day"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))


def test_the_typed_report_reads_like_its_json(small_report) -> None:
    data = json.loads(small_report.to_json())
    tier = small_report["recommendation"]["tiers"][0]
    assert tier["name"] == data["recommendation"]["tiers"][0]["name"]
    assert small_report.recommendation.usd_per_day.simulated == data["recommendation"]["usd_per_day"]["simulated"]
    assert "peak_hour" in small_report and "no-such-key" not in small_report
    assert small_report.get("no-such-key", 3) == 3
    assert json.loads(dumps(small_report)) == data


def test_a_result_keeps_the_keys_it_was_given_in_their_order() -> None:
    produced = {
        "model": "m",
        "gpu": "g",
        "zeta": 1,
        "params": {"total": 2, "active": 1},
        "memory": {"kv_capacity_tokens": 5, "weights_bytes": 1.5, "kv_bytes_per_token": 2.5},
        "fits": True,
        "max_concurrency": {"paged": 1, "static": 0},
        "ttft_s": None,
        "itl_s": 0.01,
        "max_output_tokens_per_s": 10.0,
    }
    result = PlanResult.model_validate(produced)
    assert list(json.loads(result.to_json())) == list(produced)  # "usd_per_mtok" and "notes" were not given
    assert list(json.loads(result.to_json())["memory"]) == list(produced["memory"])
    result["added"] = [1]
    assert list(result.keys())[-1] == "added" and result["added"] == [1]
