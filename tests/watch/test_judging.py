"""Interval observations from counter deltas, predictions at the observed load, bands and the alarm rule."""

from __future__ import annotations

import pytest

from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.results import FigureInterval
from tokenomy.watch.compare import WINDOW_BANDS, Check, DriftTracker, compare, predict
from tokenomy.watch.observe import CounterReset, observe
from tokenomy.watch.scrape import Reading


def reading(t: float, **values: float) -> Reading:
    return Reading(t, "vllm", values)


BASE = dict(requests=0, prompt_tokens=0, generation_tokens=0, ttft_sum=0, ttft_count=0, itl_sum=0, itl_count=0)


def test_deltas_in_the_cost_model_clock() -> None:
    prev = reading(0.0, **BASE, e2e_sum=0.0, e2e_count=0, running=2, waiting=0)
    cur = reading(
        2.0,
        requests=10,
        prompt_tokens=5000,
        generation_tokens=1000,
        ttft_sum=0.05,
        ttft_count=10,
        itl_sum=0.99,
        itl_count=990,
        e2e_sum=4.0,
        e2e_count=10,
        running=4,
        waiting=1,
    )
    o = observe(prev, cur, time_scale=10.0)
    assert o.model_s == 20.0
    assert o.ttft_s == pytest.approx(0.05 / 10 * 10)  # mean wall TTFT × time scale
    assert o.itl_s == pytest.approx(0.001 * 10)
    assert o.output_tokens_per_s == pytest.approx(1000 / 20.0)
    assert (o.prompt_tokens_per_request, o.output_tokens_per_request) == (500, 100)
    # Little's law: Σ e2e / Δt = 2 in the system, less the mean waiting (0.5)
    assert o.batch == pytest.approx(1.5) and o.batch_source == "little"


def test_gauges_when_no_e2e_and_llamacpp_itl() -> None:
    prev = Reading(0.0, "llamacpp", dict(generation_tokens=100, generation_seconds=2.0, running=1, waiting=0))
    cur = Reading(1.0, "llamacpp", dict(generation_tokens=200, generation_seconds=4.5, running=3, waiting=2))
    o = observe(prev, cur)
    assert o.itl_s == pytest.approx(0.025) and o.itl_count == 100
    assert o.batch == 2.0 and o.batch_source == "gauge" and o.waiting == 1.0
    assert o.ttft_s is None


def test_llamacpp_batch_from_busy_slots_per_decode() -> None:
    # 100 steps at 1.5 busy slots on average, then 300 more at 3.5: the interval's steps ran 3.5 on average
    prev = Reading(0.0, "llamacpp", dict(decode_calls=100, busy_slots_per_decode=1.5, running=0, waiting=0))
    cur = Reading(1.0, "llamacpp", dict(decode_calls=400, busy_slots_per_decode=3.0, running=4, waiting=0))
    o = observe(prev, cur)
    assert (o.batch, o.batch_source) == (pytest.approx(3.5), "decode")
    idle = observe(cur, Reading(2.0, "llamacpp", dict(decode_calls=400, busy_slots_per_decode=3.0, running=0)))
    assert (idle.batch, idle.batch_source) == (0.0, "decode")  # no step in the interval: nothing ran
    with pytest.raises(CounterReset):
        observe(cur, Reading(2.0, "llamacpp", dict(decode_calls=10, busy_slots_per_decode=1.0)))


def test_a_count_going_down_is_a_restart_but_a_sum_may_fall() -> None:
    with pytest.raises(CounterReset):
        observe(reading(0.0, **{**BASE, "generation_tokens": 50}), reading(1.0, **BASE))
    o = observe(reading(0.0, **{**BASE, "ttft_sum": 1.0, "ttft_count": 3}), reading(1.0, **{**BASE, "ttft_count": 4}))
    assert o.ttft_s is not None  # a negative observation lowered the sum: no restart


def test_prediction_moves_with_the_load() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    light, heavy = predict(d, 1, 512, 128), predict(d, 64, 512, 128)
    assert heavy.itl_s > light.itl_s and heavy.output_tokens_per_s > 10 * light.output_tokens_per_s
    assert predict(d, 8, 512, 128, waiting=30).ttft_s > predict(d, 8, 512, 128).ttft_s
    assert 0 < light.kv_usage < heavy.kv_usage <= 1


def _obs(itl_s: float, ttft_s: float | None = None, gaps: float = 100, firsts: float = 10, finished: float = 10):
    prev = reading(0.0, **BASE)
    cur = reading(
        1.0,
        **{
            **BASE,
            "requests": finished,
            "itl_sum": itl_s * gaps,
            "itl_count": gaps,
            "ttft_sum": (ttft_s or 0) * firsts,
            "ttft_count": firsts if ttft_s else 0,
            "generation_tokens": gaps,
        },
    )
    return observe(prev, cur)


def test_bands_are_relative_and_symmetric_in_log() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    pred = predict(d, 1, 512, 128)

    def status(itl_s: float, **kw: float) -> str:
        return next(c for c in compare(_obs(itl_s, **kw), pred, {"itl_s": 0.25}) if c.metric == "itl_s").status

    assert status(pred.itl_s * 1.2) == "ok"
    assert status(pred.itl_s * 1.3) == "high"
    assert status(pred.itl_s / 1.2) == "ok"
    assert status(pred.itl_s / 1.3) == "low"
    assert status(pred.itl_s * 3, gaps=5) == "no data"  # too few gaps to judge


def test_alarm_needs_consecutive_intervals_and_no_data_does_not_reset() -> None:
    t = DriftTracker(("itl_s",), confirm=2)

    def c(status: str) -> list[Check]:
        band = dict(interval=(0.8, 1.25), source="band", band=0.25)
        return [Check("itl_s", 1.0, 1.0, status=status, **band), Check("ttft_s", 9.0, 1.0, status="high", **band)]

    assert t.update(c("high")) == []
    assert t.update(c("ok")) == []
    assert t.update(c("high")) == []
    assert t.update(c("no data")) == []
    assert t.update(c("low")) == ["itl_s"]  # ttft is not alarmed on here
    assert t.update(c("ok")) == []


def test_a_queue_where_the_model_admits_everyone_is_flagged() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    gauges = dict(running=2, waiting=3)
    o = observe(reading(0.0, **BASE, **gauges), reading(1.0, **BASE, **gauges))
    pred = predict(d, o.batch, 512, 128, o.waiting)
    assert 5 < pred.admits <= d.profile.max_num_seqs and pred.waiting == 0  # 5 requests: all run at once
    queue = next(c for c in compare(o, pred) if c.metric == "waiting")
    assert queue.status == "high" and queue.observed == 3
    full = predict(d, pred.admits, 512, 128, waiting=40)
    assert full.waiting == 40  # beyond what the engine admits, a queue is expected
    o_full = observe(
        reading(0.0, **BASE, running=pred.admits, waiting=40), reading(1.0, **BASE, running=pred.admits, waiting=40)
    )
    assert next(c for c in compare(o_full, full) if c.metric == "waiting").status == "ok"


def _interval(lo: float, hi: float, metric: str = "mean_itl") -> FigureInterval:
    return FigureInterval(interval_80=[lo, hi], metric=metric, inverse=False, pool=f"{metric}|test|*", n=50, thin=True)


def _itl(checks: list[Check]) -> Check:
    return next(c for c in checks if c.metric == "itl_s")


def test_a_wide_interval_does_not_alarm_where_the_old_band_did() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    pred = predict(d, 1, 512, 128)
    wide = {"itl_s": _interval(pred.itl_s * 0.6, pred.itl_s * 1.6)}  # wider than ±25 % on both sides
    obs = _obs(pred.itl_s * 1.4)
    old, new = DriftTracker(("itl_s",), confirm=2), DriftTracker(("itl_s",), confirm=2)
    for _ in range(3):
        by_band, by_interval = compare(obs, pred), compare(obs, pred, intervals=wide)
        old_alarms, new_alarms = old.update(by_band), new.update(by_interval)
    assert _itl(by_band).source == "fallback band" and _itl(by_band).band == WINDOW_BANDS["itl_s"] == 0.25
    assert _itl(by_band).status == "high" and old_alarms == ["itl_s"]
    c = _itl(by_interval)
    assert (c.status, c.source, c.pool, c.thin) == ("ok", "80% interval", "mean_itl|test|*", True)
    assert c.interval == pytest.approx((pred.itl_s * 0.6, pred.itl_s * 1.6)) and c.band is None
    assert new_alarms == []
    assert _itl(compare(_obs(pred.itl_s * 1.7), pred, intervals=wide)).status == "high"  # beyond it: drift


def test_a_band_given_replaces_the_interval() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    pred = predict(d, 1, 512, 128)
    narrow = {"itl_s": _interval(pred.itl_s * 0.95, pred.itl_s * 1.05)}
    obs = _obs(pred.itl_s * 1.3)
    assert _itl(compare(obs, pred, intervals=narrow)).status == "high"
    c = _itl(compare(obs, pred, {"itl_s": 0.5}, narrow))
    assert (c.status, c.source, c.band, c.pool) == ("ok", "band", 0.5, "")
    assert c.interval == pytest.approx((pred.itl_s / 1.5, pred.itl_s * 1.5))
    kv = next(c for c in compare(obs, pred, intervals=narrow) if c.metric == "kv_usage")
    assert kv.source == "band (no residual pool)" and kv.band == 0.5


def test_too_few_finished_requests_are_not_judged() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    pred = predict(d, 1, 512, 128)
    tracker = DriftTracker(("itl_s", "ttft_s"), confirm=1)
    for finished in (0, 1, 2):
        checks = compare(_obs(pred.itl_s * 5, ttft_s=pred.ttft_s * 5, finished=finished), pred)
        statuses = {c.metric: c.status for c in checks}
        assert statuses == {
            "ttft_s": "too few requests",
            "itl_s": "too few requests",
            "output_tokens_per_s": "too few requests",
            "kv_usage": "too few requests",
            "waiting": "ok",  # a gauge: judged whatever finished
        }
        assert tracker.update(checks) == []
    checks = compare(_obs(pred.itl_s * 5, ttft_s=pred.ttft_s * 5, finished=3), pred)
    assert tracker.update(checks) == ["itl_s", "ttft_s"]


def test_one_finished_request_gives_no_lengths_and_no_littles_law_batch() -> None:
    prev = reading(0.0, **BASE, e2e_sum=0.0, e2e_count=0, running=4, waiting=0)
    one = dict(requests=1, prompt_tokens=9000, generation_tokens=800, e2e_sum=30.0, e2e_count=1, running=4, waiting=0)
    o = observe(prev, reading(1.0, **{**BASE, **one}))
    # Σ e2e / Δt would say 30 running; the running gauge says 4, and the token counters count unfinished requests
    assert (o.batch, o.batch_source) == (4.0, "gauge")
    assert o.prompt_tokens_per_request is None and o.output_tokens_per_request is None
    three = {**one, "requests": 3, "e2e_count": 3, "e2e_sum": 12.0}
    o = observe(prev, reading(1.0, **{**BASE, **three}))
    assert (o.batch, o.batch_source) == (12.0, "little") and o.prompt_tokens_per_request == 3000


def test_an_idle_engine_raises_nothing() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    idle = dict(running=0, waiting=0, kv_usage=0.0)
    o = observe(reading(0.0, **BASE, **idle), reading(5.0, **BASE, **idle))
    assert all(c.status not in ("high", "low") for c in compare(o, predict(d, o.batch, 512, 128)))
    llamacpp = dict(generation_tokens=0, generation_seconds=0.0, running=0, waiting=0, kv_usage=0.0)
    o = observe(Reading(0.0, "llamacpp", llamacpp), Reading(5.0, "llamacpp", llamacpp))
    assert o.requests is None  # llama.cpp does not count finished requests
    assert all(c.status not in ("high", "low") for c in compare(o, predict(d, o.batch, 512, 128)))


def test_an_interval_narrower_than_a_windows_scatter_is_widened_to_it() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment
    pred = predict(d, 1, 512, 128)
    narrow = {"itl_s": _interval(pred.itl_s * 0.95, pred.itl_s * 1.05)}
    c = _itl(compare(_obs(pred.itl_s * 1.2), pred, intervals=narrow))
    assert c.status == "ok" and c.source == "80% interval"  # within one window's scatter, though outside ±5 %
    assert c.interval == pytest.approx((pred.itl_s / 1.25, pred.itl_s * 1.25))
    wide_low = {"itl_s": _interval(pred.itl_s * 0.5, pred.itl_s * 1.05)}
    assert _itl(compare(_obs(pred.itl_s * 0.6), pred, intervals=wide_low)).status == "ok"  # the interval's side
