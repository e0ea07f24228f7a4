"""A small workload (few candidates, short simulations) shared by the advisor tests, and its report."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tokenomy.advise.advisor import Advice, advise
from tokenomy.advise.workload import Workload, parse_workload
from tokenomy.results import AdviceReport

SMALL: dict[str, Any] = {
    "name": "small",
    "volume": {"requests_per_day": 400000, "hourly_profile": [1] * 8 + [4] * 10 + [1] * 6},
    "classes": {
        "chat": {
            "share": 0.8,
            "isl": "lognormal:1200:0.5",
            "osl": "lognormal:200:0.5",
            "quality": {"mmlu_cot": 70},
            "slo": {"ttft_s": 1.5, "tpot_s": 0.05, "attainment": 0.99},
            "gateway_class": "simple",
        },
        "code": {
            "share": 0.2,
            "isl": "lognormal:2000:0.6",
            "osl": "lognormal:300:0.6",
            "quality": {"humaneval": 80},
            "slo": {"ttft_s": 2.0, "tpot_s": 0.05, "attainment": 0.99},
            "gateway_class": "complex",
        },
    },
    "candidates": {
        "gpus": ["H100-SXM", "L40S"],
        "precisions": ["bf16", "fp8", "int4"],
        "kv_precisions": ["bf16", "fp8"],
        "tensor_parallel": [1, 2, 4],
        "max_batch": [32, 128],
        "apis": ["OpenAI/gpt-4.1", "OpenAI/gpt-4.1-nano"],
    },
}
SIM_REQUESTS = 2500


def small_workload(**changes: Any) -> Workload:
    """SMALL with nested changes given as dotted keys, e.g. **{"classes.chat.quality": {...}}."""
    raw = copy.deepcopy(SMALL)
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    return parse_workload(raw, "small.yaml")


@pytest.fixture(scope="package")
def small_advice() -> Advice:
    return advise(small_workload(), verify=4, sim_requests=SIM_REQUESTS, seed=0)


@pytest.fixture(scope="package")
def small_report(small_advice: Advice) -> AdviceReport:
    from tokenomy.advise.baselines import static_baseline
    from tokenomy.advise.output import build_report
    from tokenomy.advise.peak import peak_hour_fleet

    static = static_baseline(small_advice.workload, SIM_REQUESTS, 0, "local")
    return build_report(small_advice, static, peak_hour_fleet(small_advice, minutes=3), {"total_s": 0.0})
