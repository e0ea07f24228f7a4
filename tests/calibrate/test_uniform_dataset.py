"""Dataset `uniform:F`: isl/osl are maxima and each request's lengths are uniform from int(F·L) to L (InferenceX's
`--random-range-ratio 0.8`); a load row with it runs the simulator on those lengths, a bad F is a skip reason."""

import pytest

from tests.calibrate.measurement_rows import measurement
from tokenomy.calibrate.predict import predict, uniform_lengths


def test_uniform_lengths_run_from_the_fraction_of_each_maximum_to_the_maximum():
    assert uniform_lengths("uniform:0.8", 1024, 8192) == ("uniform:819:1024", "uniform:6553:8192")
    assert uniform_lengths("uniform:1", 100, 10) == ("uniform:100:100", "uniform:10:10")


@pytest.mark.parametrize("dataset", ["uniform:", "uniform:0", "uniform:1.5", "uniform:x", "uniform:-0.2"])
def test_a_fraction_outside_0_to_1_is_a_reason_naming_the_dataset(dataset: str):
    why = uniform_lengths(dataset, 1024, 1024)
    assert isinstance(why, str) and dataset in why and "0 < F <= 1" in why


def _load_row(dataset: str, isl: int, osl: int, metric: str = "mean_tpot"):
    return measurement(
        dataset=dataset, isl=isl, osl=osl, load_kind="concurrency", load_value=16.0, metric=metric, unit="s"
    )


@pytest.mark.parametrize("metric", ["mean_tpot", "output_throughput"])
def test_uniform_lengths_predict_between_their_shortest_and_longest_fixed_lengths(metric: str):
    shortest = predict(_load_row("fixed", 819, 1638, metric)).value
    longest = predict(_load_row("fixed", 1024, 2048, metric)).value
    spread = predict(_load_row("uniform:0.8", 1024, 2048, metric)).value
    assert shortest is not None and longest is not None and spread is not None
    assert min(shortest, longest) < spread < max(shortest, longest)


def test_a_uniform_row_with_a_bad_fraction_or_offline_is_skipped_with_its_reason():
    bad = predict(_load_row("uniform:2", 1024, 1024))
    assert bad.value is None and "uniform:2" in bad.skipped_reason
    offline = predict(measurement(dataset="uniform:0.8"))
    assert offline.value is None and "uniform:0.8" in offline.skipped_reason
