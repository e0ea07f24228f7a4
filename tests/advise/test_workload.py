"""Workload files: errors name the file and the field; unknown names suggest the nearest ones."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.advise.conftest import SMALL
from tokenomy.advise.workload import example_workload_path, hourly_rates, load_workload
from tokenomy.catalog.errors import CatalogError


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_example_splits_its_daily_volume_by_share_and_hour() -> None:
    wl = load_workload(example_workload_path())
    total = sum(c.requests_per_day for c in wl.classes)
    assert total == pytest.approx(wl.spec.volume.requests_per_day)
    support = next(c for c in wl.classes if c.name == "support")
    assert support.requests_per_day == pytest.approx(0.75 * total)
    profile = np.array(wl.spec.volume.hourly_profile)
    assert np.allclose(wl.rates_rps / wl.rates_rps.sum(), profile / profile.sum())


def test_hourly_rates_are_taken_as_given() -> None:
    from tokenomy.advise.workload import Volume

    rates = [float(h % 5) + 0.5 for h in range(24)]
    assert hourly_rates(Volume(hourly_rates_rps=rates)).tolist() == rates


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (("classes", "chat", "isl"), "classes.chat.isl", "accepted forms"),
        (("classes", "chat", "share"), "classes.chat.share", "greater than 0"),
        (("volume", "hourly_profile"), "volume", "24 values"),
        (("candidates", "gpus"), "candidates.gpus.0", "Did you mean: H100-SXM"),
        (("classes", "chat", "quality"), "classes.chat.quality", "mmlu_cot"),
        (("candidates", "apis"), "candidates.apis.0", "Did you mean"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, change: tuple, field: str, words: str) -> None:
    raw = copy.deepcopy(SMALL)
    bad = {
        "isl": "lognormal:oops",
        "share": 0,
        "hourly_profile": [1, 2, 3],
        "gpus": ["H100-SMX"],
        "quality": {"mmlu-cot": 70},
        "apis": ["OpenAI/gpt-4.1-nanoo"],
    }[change[-1]]
    node = raw
    for k in change[:-1]:
        node = node[k]
    node[change[-1]] = bad
    path = write(tmp_path, raw)
    with pytest.raises(CatalogError) as err:
        load_workload(path)
    message = str(err.value)
    assert str(path) in message and f"'{field}'" in message and words in message, message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_workload(tmp_path / "nope.yaml")
