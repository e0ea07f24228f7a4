"""Unit tests: config errors, classifier, routing order and spill hysteresis, circuit breaker, keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from tokenomy.gateway.classifier import default_classifier, features, fit_logistic, is_held_out, load_prompts
from tokenomy.gateway.config import ConfigError, parse_config
from tokenomy.gateway.keys import KeyStore, same_secret
from tokenomy.gateway.ledger import Database
from tokenomy.gateway.router import Router, Tier, UnknownModel, self_hosted_deployment, tier_prices
from tokenomy.gateway.upstream import CircuitBreaker, Upstream

TIERS = [
    {
        "name": "small",
        "url": "http://127.0.0.1:1/v1",
        "model": "small",
        "classes": ["simple"],
        "deployment": {"model": "llama-3.1-8b", "precision": "int4"},
        "ttft_slo_s": 0.2,
        "spill_hold_s": 0.0,
    },
    {
        "name": "large",
        "url": "http://127.0.0.1:2/v1",
        "model": "large",
        "classes": ["simple", "complex"],
        "deployment": {"model": "llama-3.1-70b", "count": 4},
    },
    {
        "name": "api",
        "url": "http://127.0.0.1:3/v1",
        "model": "gpt-4.1",
        "classes": ["simple", "complex"],
        "price": "OpenAI/gpt-4.1",
    },
]


def router() -> Router:
    config = parse_config({"tiers": TIERS})
    tiers = []
    for t in config.tiers:
        d = self_hosted_deployment(t) if t.self_hosted else None
        tiers.append(Tier(t, Upstream(t, config.timeouts, config.circuit, None), d, tier_prices(t, d)))
    return Router(config, tiers, default_classifier())


def body(text: str, model: str = "auto") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def test_config_errors_name_the_file_and_field() -> None:
    with pytest.raises(ConfigError, match=r"gw.yaml: field 'tiers.0.deployment.count': .*greater than 0"):
        parse_config({"tiers": [{**TIERS[0], "deployment": {"model": "llama-3.1-8b", "count": 0}}]}, "gw.yaml")
    with pytest.raises(ConfigError, match=r"field 'tiers.0': .*needs a deployment"):
        parse_config({"tiers": [{"name": "x", "url": "http://a/v1", "model": "m", "classes": ["simple"]}]})
    with pytest.raises(ConfigError, match="repeated: small"):
        parse_config({"tiers": [TIERS[0], TIERS[0]]})
    with pytest.raises(ConfigError, match="field 'tiers.0.bogus'"):
        parse_config({"tiers": [{**TIERS[0], "bogus": 1}]})
    config = parse_config({"tiers": [{**TIERS[2], "price": "OpenAI/gpt-4.1-mni"}]})
    with pytest.raises(Exception, match="Did you mean: OpenAI/gpt-4.1-mini"):
        tier_prices(config.tiers[0], None)


def test_classifier_separates_held_out_prompts_fast() -> None:
    prompts = load_prompts()
    assert len(prompts) >= 200 and {p["label"] for p in prompts} == {"simple", "complex"}
    held = [p for p in prompts if is_held_out(p["id"])]
    clf = default_classifier()
    accuracy = np.mean([clf.classify(p)[0] == p["label"] for p in held])
    assert accuracy >= 0.85
    assert clf.classify(body("hi! thanks"))[0] == "simple"
    assert clf.classify(body("Prove that there are infinitely many primes, step by step."))[0] == "complex"


def test_fit_logistic_recovers_a_separating_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x @ np.array([2.0, -1.0, 0.0]) + 0.5 > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.01)
    assert np.mean(((x @ w + b) > 0) == y) > 0.97 and abs(w[2]) < 0.3 * abs(w[0])


def test_features_read_messages_parts_and_completion_prompts() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "def f(): return 1"}]}]}
    assert features(parts)[6] > 0  # code
    assert features({"prompt": "What is 12 * 13?"})[7] > 0  # math
    assert features({"messages": [{"role": "user", "content": "x"}] * 3})[2] == pytest.approx(0.4)  # depth


def test_routes_by_class_cheapest_first_and_passes_named_models_through() -> None:
    r = router()
    simple = r.route(body("What is the capital of France?"), 20, 100)
    assert simple.request_class == "simple" and [t.name for t in simple.candidates] == ["small", "large", "api"]
    hard = r.route(
        body("Design and implement a lock-free queue in C++, explain the memory ordering step by step."), 30, 1000
    )
    assert hard.request_class == "complex" and [t.name for t in hard.candidates][0] == "large"
    assert "small" in hard.skipped
    forced = r.route(body("hello"), 5, 10, forced_class="complex")
    assert "small" not in [t.name for t in forced.candidates]
    assert [t.name for t in r.route(body("hi", "gpt-4.1"), 5, 10).candidates] == ["api"]
    assert [t.name for t in r.route(body("hi", "large"), 5, 10).candidates] == ["large"]
    with pytest.raises(UnknownModel, match="Did you mean: large"):
        r.route(body("hi", "lage"), 5, 10)


def test_spill_has_hysteresis() -> None:
    small = router().tiers[0]
    load = small.upstream.load
    assert small.spill_reason() is None
    load.waiting, load.waiting_prompt_tokens = 8, 8 * 2000  # a queue of long prompts
    assert "over the 0.2 s SLO" in small.spill_reason()
    high = small.last_predicted_ttft_s
    load.waiting, load.waiting_prompt_tokens = 2, 2 * 2000
    between = small.predicted_ttft_s(load.mean_prompt_tokens)
    if 0.2 * 0.8 < between <= 0.2:  # under the SLO but above the resume point: still spilling
        assert small.spill_reason() is not None
    load.waiting, load.waiting_prompt_tokens = 0, 0
    assert small.spill_reason() is None and small.spill_transitions == 2 and high > 0.2
    load.reported_running, load.reported_kv_usage, load.reported_at = 10.0, 0.99, __import__("time").monotonic()
    assert small.predicted_ttft_s(100) == float("inf")  # the upstream says its KV cache is full


def test_circuit_breaker_states() -> None:
    now = [0.0]
    b = CircuitBreaker(failures_to_open=2, open_s=5.0, clock=lambda: now[0])
    b.failure()
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 5.0
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # one probe at a time
    b.release()  # the probe's client left: another may probe
    assert b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


def test_circuit_breaker_needs_failures_from_several_keys_or_a_keyless_one() -> None:
    b = CircuitBreaker(failures_to_open=2, open_s=5.0, clock=lambda: 0.0, name="small", distinct_keys_to_open=2)
    assert b.failure("key-a") is False
    assert b.failure("key-a") is True  # enough failures, one key: a health probe should decide
    assert b.failure("key-a") is True and b.state == "closed"
    b.probe_failed("HTTP 503")
    assert b.state == "open" and "health probe failed" in b.last_reason
    b = CircuitBreaker(failures_to_open=2, open_s=5.0, clock=lambda: 0.0, name="small", distinct_keys_to_open=2)
    b.failure("key-a")
    b.success()  # another tenant's success: the upstream works
    b.failure("key-b")
    assert b.state == "closed"
    b.failure("key-c")
    assert b.state == "open" and "from 2 key(s)" in b.last_reason
    b = CircuitBreaker(failures_to_open=2, open_s=5.0, clock=lambda: 0.0, name="small", distinct_keys_to_open=2)
    b.failure("key-a")
    b.failure(None)  # no connection: nobody's request caused it
    assert b.state == "open"


def test_upstream_metrics_are_parsed() -> None:
    up = router().tiers[0].upstream
    up._read_metrics(
        '# HELP x\nvllm:num_requests_running{model_name="small"} 7.0\n'
        'vllm:num_requests_waiting{model_name="small"} 3.0\nvllm:gpu_cache_usage_perc{model_name="small"} 0.5\n'
    )
    assert (up.load.reported_running, up.load.reported_waiting, up.load.reported_kv_usage) == (7.0, 3.0, 0.5)
    assert up.metrics_url == "http://127.0.0.1:1/metrics"


def test_keys_are_stored_as_keyed_digests(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path)
    store = KeyStore(db, tmp_path)
    record, key = store.create("team-a", "ci")
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600
    stored = db.execute("SELECT * FROM api_keys")
    assert key not in str(stored) and record.key_hash in str(stored)
    assert store.verify(key) == record and store.verify(key + "x") is None and store.verify("nope") is None
    other = KeyStore(db, tmp_path / "elsewhere")  # another installation's secret gives other digests
    assert other.verify(key) is None
    assert KeyStore(db, tmp_path).verify(key) == record  # same installation after a restart
    assert store.revoke(record.key_id) and store.verify(key) is None
    assert same_secret("abc", "abc") and not same_secret("abc", "abd") and not same_secret("", "")
