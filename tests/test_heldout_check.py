"""benchmarks/heldout_check.py: a held-out file that is missing, or has no throughput row it can predict, ends with
a message naming the file; the shipped files print their figure last."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tokenomy.calibrate.measurements import COLUMNS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_check.py"


@pytest.fixture
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("heldout_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missing_file_ends_with_a_message_naming_it(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "DATA", tmp_path)
    with pytest.raises(SystemExit) as done:
        check.main("gpustack")
    assert str(tmp_path / "gpustack_serving.csv") in str(done.value.code)


def test_a_file_without_a_predicted_throughput_ends_with_a_message_naming_it(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gpustack_serving.csv").write_text(",".join(COLUMNS) + "\n")
    monkeypatch.setattr(check, "DATA", tmp_path)
    with pytest.raises(SystemExit) as done:
        check.main("gpustack")
    assert "no output_throughput row was predicted" in str(done.value.code)


@pytest.mark.parametrize("name", ["inferencex", "gpustack"])
def test_each_shipped_file_prints_its_figure_last(
    check: ModuleType, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    check.main(name)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"{name}_output_throughput_median: ") and last.endswith(" %")
