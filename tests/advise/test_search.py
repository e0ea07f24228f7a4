"""Stage 1: the closed form prunes over 10,000 candidates, and nothing below a quality floor gets through."""

from __future__ import annotations

import numpy as np
import pytest

from tests.advise.conftest import small_workload
from tokenomy.advise.search import choose_partition, evaluate, make_groups
from tokenomy.advise.workload import example_workload_path, load_workload


@pytest.fixture(scope="module")
def example():
    wl = load_workload(example_workload_path())
    return wl, evaluate(wl)


def test_the_default_search_evaluates_over_ten_thousand_candidates(example) -> None:
    _, table = example
    assert len(table) >= 10_000
    assert 0 < table.feasible().sum() < len(table)
    assert (table.slots == 0).any()  # rows that do not fit are counted, not dropped
    assert set(table.spec.tolist()) == {False, True} and len(set(table.max_batch.tolist())) >= 4


def test_every_candidate_meets_its_groups_quality_floors(example) -> None:
    wl, table = example
    for g_index, group in enumerate(table.groups):
        rows = np.flatnonzero(table.group == g_index)
        assert len(rows)
        for dep in set(table.dep[rows].tolist()):
            key = table.keys[dep]
            assert wl.quality.model_meets(key.model, key.precision, group.floors), (group.name, key)
        if group.api:
            for c in group.classes:
                api = group.api.per_class[c.name]
                assert wl.quality.api_meets(api.name, c.spec.quality)


def test_a_floor_only_the_largest_model_meets_leaves_only_it() -> None:
    wl = small_workload(**{"classes.code.quality": {"humaneval": 88.5}, "candidates.apis": ["OpenAI/gpt-4.1-nano"]})
    table = evaluate(wl)
    code = next(i for i, g in enumerate(table.groups) if g.name == "code")
    models = {table.keys[d].model for d in table.dep[table.group == code]}
    precisions = {table.keys[d].precision for d in table.dep[table.group == code]}
    assert models == {"llama-3.1-405b"}  # 89.0 at bf16; 8B and 70B score below 88.5
    assert "int4" not in precisions  # 89.0 × 0.988 = 87.9 < 88.5
    assert table.groups[code].api is None  # gpt-4.1-nano scores 87.0


def test_the_merged_group_takes_the_strictest_slo_and_every_floor() -> None:
    wl = small_workload()
    merged = make_groups(wl)[-1]
    assert merged.name == "chat+code"
    assert merged.floors == {"mmlu_cot": 70, "humaneval": 80}
    assert merged.slo.ttft_s == 1.5 and merged.slo.tpot_s == 0.05
    assert merged.rates_rps.sum() == pytest.approx(wl.rates_rps.sum())


def test_the_partition_is_the_cheaper_of_separate_and_shared_tiers(example) -> None:
    _, table = example
    chosen = choose_partition(table)
    singles = [i for i, g in enumerate(table.groups) if len(g.classes) == 1]
    assert chosen == singles or chosen == [len(table.groups) - 1]
