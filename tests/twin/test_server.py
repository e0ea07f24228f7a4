"""The twin over HTTP on 127.0.0.1: OpenAI formats, errors, timing, metrics, faults and disconnects."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import httpx
import pytest

from tokenomy.costmodel.perf import single_stream
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.tokenizer import count_chat_tokens, count_tokens, prompt_of

MODEL = "llama-3.1-8b"
FAST = 50.0  # speedup for tests that do not time anything

Twin = Callable[..., str]


def sse(response: httpx.Response) -> list[dict | str]:
    """The events of a streamed response, checking the `data: ...` + blank line framing."""
    out: list[dict | str] = []
    lines = list(response.iter_lines())
    for i, line in enumerate(lines):
        if i % 2:
            assert line == "", f"events are separated by a blank line, got {line!r}"
            continue
        assert line.startswith("data: ")
        payload = line[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def chat_body(n_tokens: int = 8, **fields: object) -> dict:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt_of(50)}]
    return {"model": MODEL, "messages": messages, "max_tokens": n_tokens, **fields}


def metric(text: str, name: str) -> float:
    """Sum of a Prometheus series' samples over its labels."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    assert values, f"{name} missing from /metrics"
    return sum(values)


def test_streaming_chat_matches_openai_with_usage(twin: Twin) -> None:
    url = twin(speedup=FAST)
    body = chat_body(12, stream=True, stream_options={"include_usage": True}, ignore_eos=True)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
    assert events[-1] == "[DONE]"
    opening, *tokens, closing, usage, _ = events
    assert opening["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"]["content"] for e in tokens)
    assert len(tokens) == 12 and count_tokens(text) == 12
    assert closing["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": count_chat_tokens(body["messages"]),
        "completion_tokens": 12,
        "total_tokens": count_chat_tokens(body["messages"]) + 12,
    }
    assert len({e["id"] for e in events[:-1]}) == 1
    stats = httpx.get(f"{url}/twin/stats").json()
    lateness, variation = stats["emission_lateness_s"], stats["emission_delay_variation_s"]
    # one write per step, except that steps already overdue (0.1 ms each here) share their stream's write
    assert 1 <= lateness["count"] <= 12 and lateness["jitter_p99"] >= 0
    # under load every step may be overdue and share one write: then there is no gap between writes to summarise
    assert variation["count"] == lateness["count"] - 1
    assert variation["count"] == 0 or variation["p99"] >= 0


def test_streaming_completion_without_usage(twin: Twin) -> None:
    url = twin(speedup=FAST)
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=10) as r:
        events = sse(r)
    assert events[-1] == "[DONE]" and all("usage" not in e for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) != ""
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_non_streaming_responses_and_default_length(twin: Twin) -> None:
    url = twin(speedup=FAST, served_model_name="my-model", default_max_tokens=7)
    models = httpx.get(f"{url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["my-model"]
    body = {"model": "my-model", "messages": [{"role": "user", "content": "Hello, world!"}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).json()
    assert r["object"] == "chat.completion" and r["choices"][0]["finish_reason"] == "stop"
    assert count_tokens(r["choices"][0]["message"]["content"]) == 7
    assert r["usage"] == {"prompt_tokens": 4 + 5 + 3, "completion_tokens": 7, "total_tokens": 19}
    r = httpx.post(f"{url}/v1/completions", json={"model": "my-model", "prompt": [1, 2, 3], "max_tokens": 3}).json()
    assert r["object"] == "text_completion" and r["usage"]["prompt_tokens"] == 3
    assert count_tokens(r["choices"][0]["text"]) == 3


def test_bad_requests_get_openai_errors_and_the_server_stays_up(twin: Twin) -> None:
    url = twin(speedup=FAST, max_model_len=200)
    chat_url = f"{url}/v1/chat/completions"
    cases = [
        (httpx.post(chat_url, content=b'{"model": ', headers={"content-type": "application/json"}), 400),
        (httpx.post(chat_url, json={"model": MODEL}), 400),
        (httpx.post(chat_url, json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}), 404),
        (httpx.post(chat_url, json=chat_body(-1)), 400),
        (httpx.post(chat_url, json=chat_body(190)), 400),  # prompt + output over max_model_len
        (httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": prompt_of(300)}), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()["error"]) >= {"message", "type", "param", "code"}
    assert "maximum context length is 200" in cases[4][0].json()["error"]["message"]
    assert httpx.get(chat_url).status_code == 405
    assert httpx.post(chat_url, json=chat_body(3), timeout=10).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200


def test_ttft_and_itl_over_http_match_the_cost_model(twin: Twin) -> None:
    """At speedup K the wall-clock TTFT and ITL are the cost model's divided by K (plus HTTP overhead).

    Medians over three requests, as other processes share this machine's CPUs."""
    speedup, isl, osl = 10.0, 1000, 30
    d = resolve(DeploymentSpec(model=MODEL, gpu="L4", tp=1)).deployment
    ttft_s, itl_s = single_stream(d, isl, osl)
    url = twin(gpu="L4", tp=1, speedup=speedup)
    ttfts, gaps = [], []
    with httpx.Client(timeout=10) as client:
        client.get(f"{url}/health")  # connection warm
        for i in range(3):
            prompt = list(range(i * isl, (i + 1) * isl))  # distinct: no prefix-cache hits
            body = {"model": MODEL, "prompt": prompt, "max_tokens": osl, "stream": True}
            start = time.perf_counter()
            times = []
            with client.stream("POST", f"{url}/v1/completions", json=body) as r:
                for line in r.iter_lines():
                    if line.startswith('data: {"id"') and '"text":""' not in line:
                        times.append(time.perf_counter())
            assert len(times) == osl
            ttfts.append(times[0] - start)
            gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
    overhead_s = statistics.median(ttfts) - ttft_s / speedup  # HTTP, tokenising, the step boundary (wall)
    assert -0.001 < overhead_s < 0.015
    assert statistics.median(gaps) * speedup == pytest.approx(itl_s, rel=0.1)


def test_metrics_have_vllm_series_that_move(twin: Twin) -> None:
    url = twin(speedup=2.0)
    names = [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:gpu_cache_usage_perc",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ]
    before = httpx.get(f"{url}/metrics").text
    for name in names:
        metric(before, name)
    assert 'model_name="llama-3.1-8b"' in before
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat_body(400, stream=True), timeout=10) as r:
        lines = r.iter_lines()
        next(lines)
        during = httpx.get(f"{url}/metrics").text
    assert metric(during, "vllm:num_requests_running") == 1
    assert metric(during, "vllm:kv_cache_usage_perc") > 0
    httpx.post(f"{url}/v1/chat/completions", json=chat_body(3, max_tokens=3), timeout=10)
    after = httpx.get(f"{url}/metrics").text
    assert metric(after, "vllm:prompt_tokens_total") == 2 * count_chat_tokens(chat_body()["messages"])
    assert metric(after, "vllm:generation_tokens_total") >= 3
    assert metric(after, "vllm:request_success_total") == 1  # the streamed one was abandoned
    assert metric(after, "vllm:e2e_request_latency_seconds_count") == 1
    assert metric(after, "vllm:num_requests_running") == 0


def test_queueing_when_kv_is_full_shows_in_metrics(twin: Twin) -> None:
    url = twin(gpu="L4", tp=1, speedup=20.0)
    capacity = httpx.get(f"{url}/twin/stats").json()["kv_capacity_tokens"]
    isl = capacity * 45 // 100
    with httpx.Client(timeout=20) as client:
        bodies = [{"model": MODEL, "prompt": [i] * isl, "max_tokens": 200, "stream": True} for i in range(3)]
        streams = [client.stream("POST", f"{url}/v1/completions", json=body) for body in bodies]  # no shared prefix
        responses = [s.__enter__() for s in streams]
        try:
            lines = [r.iter_lines() for r in responses[:2]]  # kept: a dropped iterator closes its connection
            for first_tokens in lines:
                next(first_tokens)
            text = client.get(f"{url}/metrics").text
            # vLLM v1 admits a prompt chunk by chunk: the third may hold a partial chunk (running) until its next
            # chunk finds no block and it is preempted back to waiting, so only the total is fixed
            assert metric(text, "vllm:num_requests_running") + metric(text, "vllm:num_requests_waiting") == 3
            assert metric(text, "vllm:num_requests_running") >= 2
            assert metric(text, "vllm:gpu_cache_usage_perc") > 0.85
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    time.sleep(0.1)
    stats = httpx.get(f"{url}/twin/stats").json()
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["counters"]["requests_cancelled"] == 3


def test_a_repeated_prompt_hits_the_prefix_cache(twin: Twin) -> None:
    url = twin(gpu="L4", tp=1, speedup=10.0)
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt_of(2100)}], "max_tokens": 2, "stream": True}
    ttfts = []
    with httpx.Client(timeout=10) as client:
        for _ in range(2):
            start = time.perf_counter()
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data: {")]
                ttfts.append(time.perf_counter() - start)
                assert len(lines) == 4  # opening, 2 tokens, closing
        text = client.get(f"{url}/metrics").text
    assert metric(text, "vllm:prefix_cache_hits_total") == 2048  # four 512-token blocks
    assert metric(text, "vllm:prefix_cache_queries_total") == 2 * count_chat_tokens(body["messages"])
    assert ttfts[1] < 0.5 * ttfts[0]


def test_client_disconnect_cancels_the_request(twin: Twin) -> None:
    url = twin(speedup=5.0)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat_body(5000, stream=True), timeout=10) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/twin/stats").json()
        if stats["counters"]["requests_cancelled"] == 1:
            break
        time.sleep(0.02)
    assert stats["counters"]["requests_cancelled"] == 1 and stats["running"] == 0 and stats["kv_usage"] == 0


def test_refuse_and_http500_faults(twin: Twin) -> None:
    url = twin(speedup=FAST, fail="refuse")
    r = httpx.post(f"{url}/v1/chat/completions", json=chat_body())
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "error" in r.json()
    assert httpx.get(f"{url}/health").status_code == 503
    assert httpx.post(f"{url}/twin/fail", json={"mode": "http500"}).json() == {"mode": "http500", "after_tokens": 0}
    assert httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x"}).status_code == 500
    assert httpx.post(f"{url}/twin/fail", json={"mode": "explode"}).status_code == 400
    httpx.post(f"{url}/twin/fail", json={"mode": None})
    assert httpx.post(f"{url}/v1/chat/completions", json=chat_body(2), timeout=10).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200


def test_cut_ends_the_stream_abruptly_after_n_tokens(twin: Twin) -> None:
    url = twin(speedup=FAST)
    httpx.post(f"{url}/twin/fail", json={"mode": "cut", "after_tokens": 3}).raise_for_status()
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat_body(50, stream=True), timeout=10) as r:
            received.extend(line for line in r.iter_lines() if line)
    contents = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in received]
    assert contents[0] == "" and len(contents) == 4 and "data: [DONE]" not in received
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/v1/chat/completions", json=chat_body(5), timeout=10)
    httpx.post(f"{url}/twin/fail", json={"mode": None})
    assert httpx.post(f"{url}/v1/chat/completions", json=chat_body(5), timeout=10).status_code == 200


def test_stall_stops_sending_until_the_client_gives_up(twin: Twin) -> None:
    url = twin(speedup=FAST, fail="stall", after_tokens=2)
    received: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat_body(10, stream=True), timeout=0.5) as r:
            received.extend(line for line in r.iter_lines() if line)
    assert len(received) == 3  # opening + 2 tokens, then silence
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=chat_body(2), timeout=0.3)
    assert httpx.get(f"{url}/health").status_code == 200
