"""``/metrics`` parses with prometheus_client and its counters match the requests sent; the request
log is one JSON line per request with no secrets and no prompt text unless turned on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Gateway
from conftest import test_config as gateway_config
from deployments import V, dep, hello, model, overloaded, post, provider
from fakeupstream import Answer, FakeUpstream, Received

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
HAIKU = "claude-haiku-4-5"
SECRET_PROMPT = "purple-elephant-4471 is the password"


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("metrics")
    providers = {
        "primary": provider(f"{fake.url}/primary", "primary", breaker={"failures": 2, "cooldown": 60}),
        "secondary": provider(f"{fake.url}/secondary", "secondary"),
    }
    models = {"m-duo": model(dep("primary", "up-m"), dep("secondary", "up-m", 1))}
    gateway = Gateway(d, gateway_config(fake.url, d / "bytespike.db", extra_providers=providers, extra_models=models))
    gateway.start()
    yield gateway
    gateway.stop()


def scrape(gw: Gateway) -> Samples:
    r = httpx.get(gw.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    k = (name, frozenset(labels.items()))
    return after.get(k, 0.0) - before.get(k, 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def chat(gw: Gateway, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": HAIKU, "messages": [{"role": "user", "content": "hi"}], **extra})


def test_metrics_counters_match_the_requests_sent(gw: Gateway, fake: FakeUpstream):
    key = gw.account()["key"]

    def handler(r: Received) -> Answer | None:
        return overloaded() if "/primary/" in r.path else None

    fake.handler = handler
    before = scrape(gw)
    ids = []
    for stream in (False, False, False, True, True):
        r = post(gw, key, hello(HAIKU, stream=stream))
        assert r.status_code == 200
        ids.append(r.headers["request-id"])
    for _ in range(2):
        r = chat(gw, key)
        assert r.status_code == 200
        ids.append(r.headers["request-id"])
    assert post(gw, key, hello("no-such-model")).status_code == 404
    assert httpx.post(gw.url + "/v1/messages", json=hello(HAIKU), headers=V, timeout=10).status_code == 401
    for _ in range(2):
        assert post(gw, key, hello("m-duo")).status_code == 200
    gw.wait_settled(ids)
    after = scrape(gw)

    req = "bytespike_requests_total"
    assert delta(after, before, req, protocol="anthropic", model=HAIKU, status="200", outcome="succeeded") == 5
    assert delta(after, before, req, protocol="openai", model=HAIKU, status="200", outcome="succeeded") == 2
    assert delta(after, before, req, protocol="anthropic", model="", status="404", outcome="refused") == 1
    assert delta(after, before, req, protocol="anthropic", model="", status="401", outcome="refused") == 1
    assert delta(after, before, req, protocol="anthropic", model="m-duo", status="200", outcome="succeeded") == 2
    assert total(after, req) - total(before, req) == 11

    lat = "bytespike_request_duration_seconds_count"
    assert delta(after, before, lat, protocol="anthropic", model=HAIKU) == 5
    assert delta(after, before, lat, protocol="openai", model=HAIKU) == 2
    assert delta(after, before, "bytespike_time_to_first_token_seconds_count", protocol="anthropic", model=HAIKU) == 2
    inf = delta(after, before, "bytespike_request_duration_seconds_bucket", protocol="anthropic", model=HAIKU, le="+Inf")
    assert inf == 5

    marks = ",".join("?" * len(ids))
    rows = gw.query(f"SELECT SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM usage_records "
                    f"WHERE request_id IN ({marks})", *ids)
    inp, out, cost = rows[0]
    assert inp > 0 and out > 0 and cost > 0
    assert delta(after, before, "bytespike_tokens_total", model=HAIKU, kind="input") == inp
    assert delta(after, before, "bytespike_tokens_total", model=HAIKU, kind="output") == out
    assert delta(after, before, "bytespike_cost_usd_total", model=HAIKU) == pytest.approx(cost / 1e9, abs=1e-12)

    dep_labels = {"provider": "primary", "upstream_model": "up-m"}
    assert delta(after, before, "bytespike_upstream_errors_total", type="overloaded_error", **dep_labels) == 2
    assert after[("bytespike_breaker_state", frozenset(dep_labels.items()))] == 2  # open after 2 failures
    assert after[("bytespike_breaker_state", frozenset({"provider": "secondary", "upstream_model": "up-m"}.items()))] == 0
    assert delta(after, before, "bytespike_breaker_opened_total", **dep_labels) == 1


def test_metrics_labels_never_carry_what_a_client_made_up(gw: Gateway):
    key = gw.account()["key"]
    for i in range(5):
        post(gw, key, hello(f"made-up-model-{i}"))
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    assert "made-up-model" not in text
    assert key not in text


# ---------------------------------------------------------------- request log


def request_lines(gw: Gateway, ids: list[str], timeout: float = 10) -> dict[str, dict[str, Any]]:
    """The JSON request lines for ``ids`` (written off the event loop, so wait for them)."""
    deadline = time.time() + timeout
    while True:
        found: dict[str, dict[str, Any]] = {}
        for line in gw.log.read_text().splitlines():
            if line.startswith("{"):
                rec = orjson.loads(line)
                if rec.get("event") == "request" and rec.get("request_id") in ids:
                    assert rec["request_id"] not in found, "two lines for one request"
                    found[rec["request_id"]] = rec
        if len(found) == len(ids) or time.time() > deadline:
            return found
        time.sleep(0.05)


def test_one_json_line_per_request_without_secrets_or_prompt_text(gw: Gateway):
    acct = gw.account()
    key = acct["key"]
    ids = []
    for stream in (False, True):
        r = post(gw, key, hello(HAIKU, stream=stream, text=SECRET_PROMPT))
        assert r.status_code == 200
        ids.append(r.headers["request-id"])
    r = post(gw, key, {**hello("no-such-model"), "system": SECRET_PROMPT})
    ids.append(r.headers["request-id"])
    gw.wait_settled(ids[:2])
    lines = request_lines(gw, ids)
    assert set(lines) == set(ids)
    ok = lines[ids[0]]
    rows = gw.query("SELECT input_tokens, output_tokens, cost FROM usage_records WHERE request_id = ?", ids[0])
    assert ok["key_id"] == acct["key_id"] and ok["model"] == HAIKU and ok["provider"] == "anthropic"
    assert ok["status"] == 200 and ok["outcome"] == "succeeded" and ok["latency_ms"] > 0
    assert (ok["tokens"]["input"], ok["tokens"]["output"]) == rows[0][:2]
    assert ok["cost_usd"] != "0"
    assert lines[ids[1]]["ttft_ms"] is not None and lines[ids[1]]["stream"] is True
    assert lines[ids[2]]["status"] == 404 and lines[ids[2]]["error_type"] == "not_found_error"
    log = gw.log.read_text()
    assert "upstream-secret" not in log
    assert key not in log and key[12:] not in log
    assert "purple-elephant" not in log


def test_prompts_are_logged_only_when_the_operator_turns_them_on(fake: FakeUpstream, tmp_path: Path):
    cfg = gateway_config(fake.url, tmp_path / "bytespike.db")
    cfg["logging"] = {"prompts": True}
    gw = Gateway(tmp_path, cfg).start()
    try:
        key = gw.account()["key"]
        r = post(gw, key, hello(HAIKU, text=SECRET_PROMPT))
        assert r.status_code == 200
        line = request_lines(gw, [r.headers["request-id"]])[r.headers["request-id"]]
    finally:
        gw.stop()
    assert line["request"]["messages"][0]["content"] == SECRET_PROMPT
    assert "upstream-secret" not in gw.log.read_text()
