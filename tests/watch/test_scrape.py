"""Reading vLLM, SGLang and llama.cpp metrics into one shape, with prometheus-client's parser."""

from __future__ import annotations

import pytest

from tokenomy.watch.scrape import ScrapeError, metrics_url, parse_reading

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="a"} 3.0
vllm:num_requests_running{engine="0",model_name="b"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="a"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.25
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="a"} 1000.0
vllm:generation_tokens_created{engine="0",model_name="a"} 1.7e9
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="a"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="a"} 5.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="a"} 5.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="a"} 0.6
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_count{engine="0",model_name="a"} 100.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="a"} 2.0
"""

SGLANG = """# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 7.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 1.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.4
# TYPE sglang:prompt_tokens counter
sglang:prompt_tokens_total{model_name="m"} 5000.0
# TYPE sglang:generation_tokens counter
sglang:generation_tokens_total{model_name="m"} 900.0
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_sum{model_name="m"} 9.0
sglang:inter_token_latency_seconds_count{model_name="m"} 890.0
"""

LLAMACPP = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 512
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 0.5
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 300
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 6
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 1
"""


def test_vllm_series_summed_over_labels_or_filtered_by_model() -> None:
    r = parse_reading(VLLM, 10.0)
    assert r.dialect == "vllm"
    assert r.get("running") == 4.0  # both models
    assert r.get("generation_tokens") == 1000.0  # _created is not a value
    assert r.get("ttft_sum") == pytest.approx(0.6) and r.get("ttft_count") == 5.0
    assert r.get("itl_count") == 100.0  # the older TPOT name when ITL is absent
    only_a = parse_reading(VLLM, 10.0, model_name="a")
    assert only_a.get("running") == 3.0 and only_a.get("waiting") == 2.0 and only_a.get("kv_usage") == 0.25


def test_sglang_and_llamacpp_dialects() -> None:
    s = parse_reading(SGLANG, 0.0)
    assert s.dialect == "sglang"
    assert (s.get("running"), s.get("waiting"), s.get("kv_usage")) == (7.0, 1.0, 0.4)
    assert s.get("itl_sum") == 9.0 and s.get("prompt_tokens") == 5000.0
    ll = parse_reading(LLAMACPP, 0.0)
    assert ll.dialect == "llamacpp"
    assert ll.get("generation_tokens") == 300 and ll.get("generation_seconds") == 6
    assert (ll.get("running"), ll.get("waiting")) == (2, 1)


def test_not_an_engine_says_so() -> None:
    with pytest.raises(ScrapeError, match="no vllm"):
        parse_reading("# TYPE up gauge\nup 1\n", 0.0)
    with pytest.raises(ScrapeError, match="not a Prometheus"):
        parse_reading("<html>{oops</html>\n", 0.0)


def test_metrics_url_accepts_base_v1_or_metrics() -> None:
    assert metrics_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://127.0.0.1:8000/metrics") == "http://127.0.0.1:8000/metrics"
