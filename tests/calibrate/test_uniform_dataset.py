"""Dataset `uniform:F`: isl/osl are maxima and each request's lengths are uniform from int(F·L) to L (InferenceX's
`--random-range-ratio 0.8`); a load row with it runs the simulator on those lengths, a bad F is a skip reason."""

import pytest

from tests.calibrate.measurement_rows import measurement
from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import predict, uniform_lengths
from tokenomy.calibrate.validate import validate


def test_uniform_lengths_run_from_the_fraction_of_each_maximum_to_the_maximum() -> None:
    assert uniform_lengths("uniform:0.8", 1024, 8192) == ("uniform:819:1024", "uniform:6553:8192")
    assert uniform_lengths("uniform:1", 100, 10) == ("uniform:100:100", "uniform:10:10")
    assert uniform_lengths("uniform:0.01", 50, 8) == ("uniform:1:50", "uniform:1:8")  # at least one token


@pytest.mark.parametrize("dataset", ["uniform:", "uniform:0", "uniform:1.5", "uniform:x", "uniform:-0.2"])
def test_a_fraction_outside_0_to_1_is_a_reason_naming_the_dataset(dataset: str) -> None:
    why = uniform_lengths(dataset, 1024, 1024)
    assert isinstance(why, str) and dataset in why and "0 < F <= 1" in why


def _load_row(dataset: str, isl: int | None, osl: int | None, metric: str = "mean_tpot") -> Measurement:
    return measurement(
        dataset=dataset, isl=isl, osl=osl, load_kind="concurrency", load_value=16.0, metric=metric, unit="s"
    )


@pytest.mark.parametrize("metric", ["mean_tpot", "mean_ttft", "output_throughput"])
def test_a_fraction_of_1_is_the_fixed_lengths_and_a_smaller_one_changes_the_prediction(metric: str) -> None:
    fixed = predict(_load_row("fixed", 1024, 2048, metric)).value
    assert fixed is not None
    assert predict(_load_row("uniform:1", 1024, 2048, metric)).value == pytest.approx(fixed, rel=1e-12)
    spread = predict(_load_row("uniform:0.5", 1024, 2048, metric)).value
    assert spread is not None and spread != pytest.approx(fixed, rel=1e-3)


def test_a_uniform_row_with_a_bad_fraction_no_lengths_or_offline_is_skipped_with_its_reason() -> None:
    bad = predict(_load_row("uniform:2", 1024, 1024))
    assert bad.value is None and "'uniform:2'" in bad.skipped_reason and "0 < F <= 1" in bad.skipped_reason
    unbounded = predict(_load_row("uniform:0.8", None, None))
    assert unbounded.value is None and "without isl/osl" in unbounded.skipped_reason
    offline = predict(measurement(dataset="uniform:0.8"))
    assert offline.value is None and "uniform:0.8" in offline.skipped_reason


def test_validate_names_a_uniform_rows_lengths_with_its_dataset() -> None:
    row = _load_row("uniform:0.8", 1024, 2048)
    (record,) = validate([row])["rows"]
    assert record["lengths"] == "1024/2048 uniform:0.8"
    (fixed,) = validate([_load_row("fixed", 1024, 2048)])["rows"]
    assert fixed["lengths"] == "1024/2048"
