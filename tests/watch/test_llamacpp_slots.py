"""llama.cpp servers run as many requests at once as they have slots (`-np`); watch takes that from /props, or from
--max-num-seqs, instead of the shipped profile's one-at-a-time, so four busy slots are not predicted as a queue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.watch.loop import watch_loop
from tokenomy.watch.scrape import Reading, fetch_llamacpp_slots
from tokenomy.watch.session import EngineWatch, IntervalReport, WatchOptions


def metrics(decodes: int) -> str:
    """A llama-server exposition: four slots busy on every step so far."""
    return (
        "# TYPE llamacpp:tokens_predicted_total counter\n"
        f"llamacpp:tokens_predicted_total {4 * decodes}\n"
        "# TYPE llamacpp:tokens_predicted_seconds_total counter\n"
        f"llamacpp:tokens_predicted_seconds_total {4 * decodes * 0.08}\n"
        "# TYPE llamacpp:n_decode_total counter\n"
        f"llamacpp:n_decode_total {decodes}\n"
        "# TYPE llamacpp:n_busy_slots_per_decode gauge\n"
        "llamacpp:n_busy_slots_per_decode 4\n"
        "# TYPE llamacpp:requests_processing gauge\n"
        "llamacpp:requests_processing 4\n"
        "# TYPE llamacpp:requests_deferred gauge\n"
        "llamacpp:requests_deferred 0\n"
    )


@pytest.fixture
def server() -> Iterator[tuple[str, dict]]:
    """A stand-in llama-server on 127.0.0.1 (real HTTP): /metrics advances 50 steps per scrape; /props as set."""
    state: dict = {"decodes": 0, "props": {"total_slots": 4}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                state["decodes"] += 50
                body, kind = metrics(state["decodes"]).encode(), "text/plain; version=0.0.4"
            elif self.path == "/props" and state["props"] is not None:
                body, kind = json.dumps(state["props"]).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def d_llamacpp():  # noqa: ANN201
    spec = DeploymentSpec(model="smollm2-135m", gpu="L4", engine="llama.cpp")
    return resolve(spec).deployment


def watched(url: str, options: WatchOptions | None = None) -> list[IntervalReport]:
    reports: list[IntervalReport] = []
    w = EngineWatch(url, d_llamacpp(), options)
    watch_loop([w], 0.05, reports.extend, iterations=2)
    return reports


def test_the_profile_alone_would_predict_a_queue_of_three_behind_one_slot() -> None:
    w = EngineWatch("http://engine", d_llamacpp())
    assert w.d.profile.max_num_seqs == 1
    w.feed(Reading(0.0, "llamacpp", dict(decode_calls=0, busy_slots_per_decode=4, running=4, waiting=0)))
    report = w.feed(Reading(5.0, "llamacpp", dict(decode_calls=50, busy_slots_per_decode=4, running=4, waiting=0)))
    assert report is not None and report.prediction is not None
    assert report.prediction.admits == 1 and report.prediction.waiting == pytest.approx(3.0)


def test_watch_takes_a_llama_servers_slots_from_props(server: tuple[str, dict]) -> None:
    url, _ = server
    reports = watched(url)
    assert reports and all(r.prediction is not None for r in reports)
    assert all(r.prediction.admits == 4 and r.prediction.waiting == 0 for r in reports)
    assert all(r.observation.batch == pytest.approx(4.0) for r in reports)


def test_max_num_seqs_given_wins_over_props_and_props_without_slots_keep_the_profile(server: tuple[str, dict]) -> None:
    url, state = server
    given = watched(url, WatchOptions(max_num_seqs=2))
    assert all(r.prediction.admits == 2 and not r.note for r in given)
    state["props"] = {"default_generation_settings": {}}  # an older server: no total_slots
    reports = watched(url)
    assert all(r.prediction.admits == 1 for r in reports)
    # not silently: every report says where the limit came from and what to give instead
    assert all("no slot count" in r.note and "--max-num-seqs" in r.note for r in reports)
    with httpx.Client() as client:
        assert fetch_llamacpp_slots(client, url) is None
        state["props"] = None  # no /props at all (404)
        assert fetch_llamacpp_slots(client, url) is None
        assert fetch_llamacpp_slots(client, "http://127.0.0.1:9/") is None  # nothing listening


def test_max_num_seqs_below_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="--max-num-seqs must be at least 1"):
        WatchOptions(max_num_seqs=0)
    r = CliRunner().invoke(app, ["watch", "http://127.0.0.1:9", "--max-num-seqs", "0"])
    assert r.exit_code == 2 and "--max-num-seqs must be at least 1, got 0" in r.output
    assert "Traceback" not in r.output
