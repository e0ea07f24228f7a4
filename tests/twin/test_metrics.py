"""The twin's /metrics as vLLM exposes it: names, types, buckets, labels; and the speed-change hook."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenomy.tokenizer import prompt_of
from tokenomy.twin.metrics import ITL_BUCKETS_S, REQUEST_LATENCY_BUCKETS_S, TTFT_BUCKETS_S, buckets_1_2_5

Twin = Callable[..., str]
MODEL = "llama-3.1-8b"


def families(url: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}


def sample(fams: dict, family: str, suffix: str = "", **labels: str) -> float:
    values = [
        s.value
        for s in fams[family].samples
        if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert values, f"{family}{suffix} {labels} missing"
    return sum(values)


def test_vllm_names_types_and_buckets(twin: Twin) -> None:
    url = twin(speedup=20.0, served_model_name="served")
    fams = families(url)
    expected = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:gpu_cache_usage_perc": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:request_success": "counter",
        "vllm:num_preemptions": "counter",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:time_per_output_token_seconds": "histogram",
        "vllm:request_time_per_output_token_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_prompt_tokens": "histogram",
        "vllm:request_generation_tokens": "histogram",
        "vllm:cache_config_info": "gauge",
    }
    for name, kind in expected.items():
        assert name in fams, f"{name} missing"
        assert fams[name].type == kind, f"{name}: {fams[name].type} != {kind}"
        assert all(s.labels.get("model_name") == "served" for s in fams[name].samples), name

    def bounds(name: str) -> list[float]:
        return [float(s.labels["le"]) for s in fams[name].samples if s.name == name + "_bucket"][:-1]

    assert bounds("vllm:time_to_first_token_seconds") == list(TTFT_BUCKETS_S)
    assert bounds("vllm:inter_token_latency_seconds") == list(ITL_BUCKETS_S)
    assert bounds("vllm:e2e_request_latency_seconds") == list(REQUEST_LATENCY_BUCKETS_S)
    assert TTFT_BUCKETS_S[:3] == (0.001, 0.005, 0.01) and REQUEST_LATENCY_BUCKETS_S[-1] == 7680.0
    info = fams["vllm:cache_config_info"].samples[0]
    assert int(info.labels["block_size"]) == 16 and int(info.labels["num_gpu_blocks"]) > 0


def test_a_request_moves_counters_and_histograms(twin: Twin) -> None:
    url = twin(speedup=20.0)
    n_out = 40
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt_of(100)}], "max_tokens": n_out}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 200
    prompt_tokens = r.json()["usage"]["prompt_tokens"]
    fams = families(url)
    assert sample(fams, "vllm:prompt_tokens", "_total") == prompt_tokens
    assert sample(fams, "vllm:generation_tokens", "_total") == n_out
    assert sample(fams, "vllm:request_success", "_total", finished_reason="length") == 1
    assert sample(fams, "vllm:inter_token_latency_seconds", "_count") == n_out - 1
    decode_s = sample(fams, "vllm:e2e_request_latency_seconds", "_sum") - sample(
        fams, "vllm:time_to_first_token_seconds", "_sum"
    )
    assert sample(fams, "vllm:inter_token_latency_seconds", "_sum") == pytest.approx(decode_s, rel=1e-6)
    assert sample(fams, "vllm:request_time_per_output_token_seconds", "_count") == 1
    assert sample(fams, "vllm:request_prompt_tokens", "_sum") == prompt_tokens
    assert sample(fams, "vllm:request_generation_tokens", "_sum") == n_out
    # cumulative buckets end at the count
    itl = [s.value for s in fams["vllm:inter_token_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert itl == sorted(itl) and itl[-1] == n_out - 1


def test_speed_can_change_mid_run(twin: Twin) -> None:
    url = twin(speedup=50.0)
    assert httpx.get(f"{url}/twin/speed").json() == {"speedup": 50.0}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 30}

    def mean_itl_s() -> float:
        before = families(url)
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200
        after = families(url)
        d_sum = sample(after, "vllm:inter_token_latency_seconds", "_sum") - sample(
            before, "vllm:inter_token_latency_seconds", "_sum"
        )
        return d_sum / 29

    fast_s = mean_itl_s()
    assert httpx.post(f"{url}/twin/speed", json={"speedup": 10.0}).json() == {"speedup": 10.0}
    slow_s = mean_itl_s()
    assert slow_s / fast_s == pytest.approx(5.0, rel=0.3)
    assert sample(families(url), "twin:speedup") == 10.0
    bad = httpx.post(f"{url}/twin/speed", json={"speedup": -1})
    assert bad.status_code == 400 and "speedup" in bad.json()["error"]["message"]
    assert httpx.post(f"{url}/twin/speed", content=b"nope").status_code == 400
    assert httpx.get(f"{url}/twin/speed").json() == {"speedup": 10.0}


def test_token_buckets_follow_vllm() -> None:
    assert buckets_1_2_5(100) == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
