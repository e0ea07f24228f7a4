"""The fit says what the data cannot identify, keeps priors there, records its rows, searches its full bounds."""

from dataclasses import replace

import pytest

from tokenomy.calibrate.fit import BOUNDS, _online_grid_s, fit_profile, fit_step_overhead, prior_profile
from tokenomy.calibrate.measurements import Measurement, read_measurements
from tokenomy.calibrate.predict import predict
from tokenomy.calibrate.validate import GROUPINGS, cross_validate
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import load_profile


@pytest.fixture(scope="module")
def shipped() -> list[Measurement]:
    return read_measurements(DATA_DIR / "measurements.csv")


def test_single_gpu_rows_cannot_identify_the_interconnect_and_keep_its_prior(shipped):
    rows = [r for r in shipped if r.model == "mistral-7b" and r.metric == "output_throughput"]
    assert rows and all(r.tp == 1 for r in rows)
    base = replace(prior_profile(load_profile("tensorrt-llm")), comm_efficiency=0.33)
    fitted = fit_profile(base, rows)
    params = fitted.fit["parameters"]
    assert fitted.comm_efficiency == 0.33
    assert params["comm_efficiency"]["status"].startswith("prior kept")
    assert params["bw_efficiency"]["status"].startswith("fitted")
    assert fitted.fit["row_ids"] == [r.id for r in rows]


def test_a_fit_on_a_bound_says_so(shipped):
    rows = [r for r in shipped if r.engine == "tensorrt-llm" and r.load_kind == "offline" and r.model == "llama-3.1-8b"]
    fitted = fit_profile(prior_profile(load_profile("tensorrt-llm")), rows)
    for name, p in fitted.fit["parameters"].items():
        lo, hi = BOUNDS[name]
        on_bound = p["status"].startswith("fitted") and min(p["value"] - lo, hi - p["value"]) <= 1e-3 * (hi - lo)
        assert on_bound == ("bound" in p["status"]), (name, p)


def test_step_overhead_grid_covers_the_full_bounds():
    grid = _online_grid_s()
    assert grid[0] == BOUNDS["step_overhead_s"][0]
    assert grid[-1] == pytest.approx(BOUNDS["step_overhead_s"][1])


def test_step_overhead_fit_finds_a_large_overhead_beyond_10_ms(shipped):
    """Rows the model made with a 30 ms step overhead: the fit finds it (the old search stopped at 10 ms)."""
    base = prior_profile(load_profile("tensorrt-llm"))
    truth = base.with_values(step_overhead_s=0.030)
    online = [r for r in shipped if r.engine == "tensorrt-llm" and r.load_kind == "rate" and r.metric == "mean_itl"][:4]
    assert online
    rows = [replace(r, value=predict(r, truth).value) for r in online]
    fitted = fit_step_overhead(base, rows)
    assert fitted.step_overhead_s == pytest.approx(0.030, rel=0.05)
    assert fitted.fit["parameters"]["step_overhead_s"]["online_row_ids"] == [r.id for r in rows]


def test_step_overhead_without_online_rows_keeps_the_prior_and_says_so(shipped):
    base = prior_profile(load_profile("tensorrt-llm")).with_values(fit={"parameters": {}})
    offline = [r for r in shipped if r.load_kind == "offline"][:5]
    fitted = fit_step_overhead(base, offline)
    assert fitted.step_overhead_s == base.step_overhead_s
    assert "no online" in fitted.fit["parameters"]["step_overhead_s"]["online"]


def test_cross_validation_never_predicts_a_row_with_a_fit_that_saw_it(shipped):
    rows = [r for r in shipped if r.load_kind == "offline"][::10]
    seen: list[frozenset[str]] = []

    def fitter(train, bases):
        seen.append(frozenset(r.id for r in train))
        return {"tensorrt-llm": bases["tensorrt-llm"].with_values(fitted_on=str(len(seen) - 1))}

    bases = {"tensorrt-llm": load_profile("tensorrt-llm"), "generic": load_profile("generic")}
    cv = cross_validate(rows, bases, fitter=fitter, fit_key=lambda train: frozenset(r.id for r in train))
    assert cv.fits == len(seen)
    for grouping, key in GROUPINGS.items():
        entries = cv.held_out[grouping]
        assert len({g for g, _, _ in entries}) >= 2, grouping
        for group, row, _ in entries:
            train = frozenset(r.id for r in rows if key(r) != group)
            assert key(row) == group and row.id not in train and train in seen
