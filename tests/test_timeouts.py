"""Each upstream timeout phase fires with its error against an upstream that stalls at that phase:
connect, first byte, idle gap between chunks, total. Before the client's first byte a timeout is a
504 ``timeout_error`` (or a failover to the next deployment); after it, an SSE ``error`` event."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from deployments import (
    charges,
    dep,
    hello,
    message_answer,
    model,
    post,
    provider,
    record,
    sse_events,
    stream_answer,
    stream_chunks,
    to,
)
from fakeupstream import Answer, FakeUpstream, Received


@pytest.fixture(scope="module")
def no_accept() -> Iterator[int]:
    """A port whose accept queue is full: a new connection's SYN is dropped, so connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    probe = socket.socket()
    probe.settimeout(0.3)
    with pytest.raises(TimeoutError):  # the premise: connecting here hangs
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield port
    filler.close()
    listener.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[int]:
    """A port that takes connections (in the kernel's queue) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, no_accept: int, silent: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("timeouts")
    providers = {
        "noconnect": provider(f"http://127.0.0.1:{no_accept}", "noconnect",
                              timeouts={"connect": 0.5, "first_byte": 20, "idle": 20, "total": 30}),
        "silent": provider(f"http://127.0.0.1:{silent}", "silent",
                           timeouts={"connect": 2, "first_byte": 0.5, "idle": 20, "total": 1.0}),
        "stally": provider(f"{fake.url}/stally", "stally",
                           timeouts={"connect": 2, "first_byte": 0.8, "idle": 0.5, "total": 2.5}),
        "secondary": provider(f"{fake.url}/secondary", "secondary"),
    }
    models = {
        "t-connect": model(dep("noconnect", "t-connect")),
        "t-silent": model(dep("silent", "t-silent")),
        "t-stally": model(dep("stally", "t-stally")),
        "t-connect-duo": model(dep("noconnect", "t-connect-duo"), dep("secondary", "t-connect-duo", 1)),
        "t-silent-duo": model(dep("silent", "t-silent-duo"), dep("secondary", "t-silent-duo", 1)),
        "t-idle-duo": model(dep("stally", "t-idle-duo"), dep("secondary", "t-idle-duo", 1)),
    }
    gateway = Gateway(d, gateway_config(fake.url, d / "bytespike.db", extra_providers=providers, extra_models=models))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture()
def key(gw: Gateway) -> str:
    return gw.account()["key"]


def timed(gw: Gateway, key: str, body: dict) -> tuple[httpx.Response, float]:
    t = time.perf_counter()
    r = post(gw, key, body)
    return r, time.perf_counter() - t


def assert_504(r: httpx.Response, words: str) -> None:
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout_error"
    assert words in err["message"]
    assert "127.0.0.1" not in r.text


def only(fake: FakeUpstream, answer: Answer) -> None:
    """Every request to the ``stally`` provider gets ``answer``."""

    def handler(r: Received) -> Answer | None:
        return answer if "/stally/" in r.path else None

    fake.handler = handler


def assert_stream_ends_with_timeout(gw: Gateway, r: httpx.Response, words: str) -> None:
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "timeout_error"
    assert words in events[-1][1]["error"]["message"]
    rid = r.headers["request-id"]
    gw.wait_settled([rid])
    rec = record(gw, rid)
    assert rec["status"] == "failed" and rec["error_type"] == "timeout_error" and rec["cost"] == 0
    assert charges(gw, rid) == 0


# ---------------------------------------------------------------- before the first byte: 504


@pytest.mark.parametrize("stream", [False, True])
def test_connect_timeout_is_a_504_timeout_error_not_overloaded(gw: Gateway, key: str, stream: bool):
    r, took = timed(gw, key, hello("t-connect", stream=stream))
    assert_504(r, "connect")
    assert 0.4 < took < 3


def test_first_byte_timeout_on_a_stream_is_a_504(gw: Gateway, key: str):
    r, took = timed(gw, key, hello("t-silent", stream=True))
    assert_504(r, "did not answer within 0.5s")
    assert 0.4 < took < 0.95


def test_total_timeout_on_a_whole_answer_is_a_504(gw: Gateway, key: str):
    r, took = timed(gw, key, hello("t-silent"))  # no stream: the headers come with the answer, so total rules
    assert_504(r, "within 1s")
    assert 0.9 < took < 2


def test_headers_without_a_first_chunk_hit_the_first_byte_deadline(gw: Gateway, fake: FakeUpstream, key: str):
    only(fake, stream_answer(["never"], stall_after=0))
    r, took = timed(gw, key, hello("t-stally", stream=True))
    assert_504(r, "did not start answering within 0.8s")
    assert 0.7 < took < 1.5


def test_total_timeout_on_a_slow_whole_answer_is_a_504(gw: Gateway, fake: FakeUpstream, key: str):
    only(fake, message_answer(delay_before=3.5))
    r, took = timed(gw, key, hello("t-stally"))
    assert_504(r, "within 2.5s")
    assert 2.4 < took < 3.4


@pytest.mark.parametrize("name", ["t-connect-duo", "t-silent-duo"])
def test_a_timeout_before_the_first_byte_fails_over(gw: Gateway, fake: FakeUpstream, key: str, name: str):
    for stream in (True, False):
        r = post(gw, key, hello(name, stream=stream))
        assert r.status_code == 200, r.text
        rid = r.headers["request-id"]
        gw.wait_settled([rid])
        assert record(gw, rid)["provider"] == "secondary"
        assert charges(gw, rid) == 1


# ---------------------------------------------------------------- after the first byte: SSE error


def test_idle_gap_mid_stream_ends_with_an_sse_timeout_error_and_no_retry(gw: Gateway, fake: FakeUpstream, key: str):
    only(fake, stream_answer(["Hel", "lo"], stall_after=3))
    t = time.perf_counter()
    r = post(gw, key, hello("t-stally", stream=True))
    assert_stream_ends_with_timeout(gw, r, "stalled")
    assert time.perf_counter() - t < 2

    only(fake, stream_answer(["Hel", "lo"], stall_after=3))
    r = post(gw, key, hello("t-idle-duo", stream=True))
    assert_stream_ends_with_timeout(gw, r, "stalled")
    assert to(fake.received, "/secondary/") == 0


def test_total_deadline_mid_stream_ends_with_an_sse_timeout_error(gw: Gateway, fake: FakeUpstream, key: str):
    # every gap (0.3 s) is within idle (0.5 s), but the whole stream outlasts total (2.5 s)
    only(fake, Answer(chunks=stream_chunks([f"w{i} " for i in range(12)]), delay_between=0.3,
                      content_type="text/event-stream; charset=utf-8"))
    t = time.perf_counter()
    r = post(gw, key, hello("t-stally", stream=True))
    assert_stream_ends_with_timeout(gw, r, "did not finish within 2.5s")
    assert 2.3 < time.perf_counter() - t < 3.5


def test_a_slow_but_steady_stream_within_every_deadline_completes(gw: Gateway, fake: FakeUpstream, key: str):
    only(fake, Answer(chunks=stream_chunks(["a", "b", "c"]), delay_between=0.3,
                      content_type="text/event-stream; charset=utf-8"))
    r = post(gw, key, hello("t-stally", stream=True))
    assert r.status_code == 200
    assert sse_events(r.text)[-1][0] == "message_stop"
