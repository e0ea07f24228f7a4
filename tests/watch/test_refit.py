"""The online overhead refit recovers overheads the engine really has, and its profile is usable by plan."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.main import app
from tokenomy.costmodel.perf import steady_state
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.watch.export import write_profile
from tokenomy.watch.refit import OverheadRefit, fitted_profile


@pytest.fixture(scope="module")
def d():  # noqa: ANN201
    return resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment


def engine_itl_s(d, step_s: float, seq_s: float, batch: float) -> float:  # noqa: ANN001
    """ITL of an 'engine' whose real overheads differ from the profile's."""
    true = dataclasses.replace(d, profile=d.profile.with_values(step_overhead_s=step_s, seq_overhead_s=seq_s))
    return float(steady_state(true, 512, 128, batch).tpot_s)


def test_recovers_both_overheads_when_the_batch_varies(d) -> None:  # noqa: ANN001
    refit = OverheadRefit(d, window=10)
    for b in (1, 4, 8, 16, 32, 48, 64):
        refit.add(engine_itl_s(d, 0.006, 40e-6, b), b, 512, 128)
    fit = refit.fit()
    assert fit is not None and fit.fitted == ("step_overhead_s", "seq_overhead_s")
    assert fit.step_overhead_s == pytest.approx(0.006, rel=1e-3)
    assert fit.seq_overhead_s == pytest.approx(40e-6, rel=1e-3)
    assert fit.prior_step_overhead_s == d.profile.step_overhead_s


def test_steady_batch_fits_the_step_overhead_only_and_the_window_forgets(d) -> None:  # noqa: ANN001
    refit = OverheadRefit(d, window=3)
    for _ in range(3):
        refit.add(engine_itl_s(d, 0.010, d.profile.seq_overhead_s, 8), 8, 512, 128)
    fit = refit.fit()
    assert fit.fitted == ("step_overhead_s",) and fit.step_overhead_s == pytest.approx(0.010, rel=1e-3)
    for _ in range(3):  # the engine got faster: the old intervals leave the window
        refit.add(engine_itl_s(d, 0.001, d.profile.seq_overhead_s, 8), 8, 512, 128)
    assert refit.fit().step_overhead_s == pytest.approx(0.001, rel=1e-3)


def test_fitted_profile_file_is_accepted_by_plan(d, tmp_path) -> None:  # noqa: ANN001
    refit = OverheadRefit(d)
    refit.add(engine_itl_s(d, 0.004, d.profile.seq_overhead_s, 4), 4, 512, 128)
    path = tmp_path / "fitted.json"
    write_profile(fitted_profile(load_profile("vllm"), refit.fit(), "tokenomy watch test"), path)
    loaded = load_profile(str(path))
    assert loaded.step_overhead_s == pytest.approx(0.004, rel=1e-3) and "in sample" in loaded.fitted_on
    runner = CliRunner()
    args = ["plan", "--model", "llama-3.1-8b", "--isl", "512", "--osl", "128", "--json", "--engine"]
    fitted = json.loads(runner.invoke(app, [*args, str(path)]).stdout)
    default = json.loads(runner.invoke(app, [*args, "vllm"]).stdout)

    # plan's unloaded ITL moves by exactly the change of the per-step overhead
    shift_s = loaded.step_overhead_s - load_profile("vllm").step_overhead_s
    assert fitted["itl_s"] - default["itl_s"] == pytest.approx(shift_s, rel=1e-6)
