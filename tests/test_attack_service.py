"""The service under attack: strangers cannot grow memory, slow and idle connections are closed on
their timeouts while normal requests are served, and nothing a client sends gets a traceback."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream
from greedy import Greedy

V = {"anthropic-version": "2023-06-01"}
METRICS_TOKEN = "metrics-" + "m" * 24
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
WRITE_TIMEOUT = 2.0
MAX_HEADER_BYTES = 32 * 1024
MEMORY_BOUND_MIB = 40  # README, "Security and limits": what 100 such connections may cost


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("attack")
    cfg = gateway_config(fake.url, d / "bytespike.db")
    cfg["server"] = {"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT, "keepalive_timeout": 1,
                     "write_timeout": WRITE_TIMEOUT, "max_header_bytes": MAX_HEADER_BYTES, "max_headers": 50}
    cfg["metrics"] = {"token": METRICS_TOKEN}
    g = Gateway(d, cfg).start()
    yield g
    g.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(gw: Gateway) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    return s


def closed_within(s: socket.socket, seconds: float) -> bool:
    """True if the gateway closes ``s`` within ``seconds`` (whatever it answered first)."""
    s.settimeout(0.2)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def served(gw: Gateway, key: str) -> bool:
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": key}, timeout=10,
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    return r.status_code == 200


def test_100_strangers_sending_huge_bodies_and_headers_cannot_grow_memory_past_the_documented_bound(
        gw: Gateway) -> None:
    assert gw.proc is not None
    before = rss_mib(gw.proc.pid)
    socks: list[socket.socket] = []
    answers: list[bytes] = []
    chunk = b"x" * (256 * 1024)

    def body_sender() -> None:
        s = connect(gw)
        socks.append(s)
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: 31457280\r\n\r\n")
        try:
            for _ in range(40):  # 10 MB each, if the gateway let it
                s.sendall(chunk)
        except OSError:
            pass
        answers.append(s.recv(4096))

    def header_sender() -> None:
        s = connect(gw)
        socks.append(s)
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-filler: ")
        try:
            for _ in range(40):  # an unterminated 10 MB header
                s.sendall(chunk)
        except OSError:
            pass
        answers.append(s.recv(4096))

    threads = [threading.Thread(target=body_sender if i % 2 else header_sender) for i in range(100)]
    for t in threads:
        t.start()
    peak = before
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mib(gw.proc.pid))
        time.sleep(0.05)
    for s in socks:
        s.close()
    assert len(answers) == 100
    assert sum(a.startswith(b"HTTP/1.1 401") for a in answers) == 50, answers[:3]
    assert sum(a.startswith(b"HTTP/1.1 431") for a in answers) == 50, answers[:3]
    assert peak - before < MEMORY_BOUND_MIB, (before, peak)


def test_idle_slow_header_and_slow_body_connections_are_closed_on_their_timeouts_while_others_are_served(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="5")
    fake.handler = Greedy()
    idle = [connect(gw) for _ in range(30)]
    slow_head = [connect(gw) for _ in range(30)]
    for s in slow_head:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
    slow_body = [connect(gw) for _ in range(30)]
    for s in slow_body:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: " + acct["key"].encode()
                  + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n"
                  b"\r\n{\"model\":")
    started = time.time()
    assert served(gw, acct["key"])
    # The slowloris keeps trickling a header byte at a time: that does not reset its clock.
    for _ in range(3):
        time.sleep(0.3)
        for s in slow_head:
            s.sendall(b"x")
    assert served(gw, acct["key"])
    for group in (idle, slow_head, slow_body):
        assert all(closed_within(s, HEADER_TIMEOUT + BODY_TIMEOUT + 2) for s in group)
    assert time.time() - started < HEADER_TIMEOUT + BODY_TIMEOUT + 4
    assert served(gw, acct["key"])
    for s in [*idle, *slow_head, *slow_body]:
        s.close()
    log = gw.log.read_text()
    assert "Traceback" not in log


def test_a_client_that_never_reads_its_stream_is_cut_off_at_the_write_deadline_and_its_hold_released(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="5")
    fake.handler = Greedy(unit="tok " * 64, chunk_tokens=200)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", gw.port))
    import orjson
    body = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 60000, "stream": True,
                         "messages": [{"role": "user", "content": "a lot"}]})
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: " + acct["key"].encode()
              + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    deadline = time.time() + WRITE_TIMEOUT + 10
    while True:
        rows = gw.query("SELECT status FROM usage_records WHERE account_id = ?", acct["account_id"])
        if rows:
            break
        assert time.time() < deadline, "the stream to a client that reads nothing was never ended"
        time.sleep(0.2)
    assert rows == [("client_disconnected",)]
    w = httpx.get(gw.url + "/v1/usage", headers={"x-api-key": acct["key"]}).json()["wallet"]
    assert w["held_usd"] == "0"
    s.close()


def test_a_websocket_upgrade_without_a_key_is_refused_cleanly(gw: Gateway) -> None:
    s = connect(gw)
    s.sendall(b"GET /v1/messages HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
              b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    answer = s.recv(65536)
    s.close()
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 405 Method Not Allowed"), answer
    assert "Traceback" not in gw.log.read_text()


def test_too_many_header_lines_get_431(gw: Gateway) -> None:
    s = connect(gw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"".join(b"x-h%d: 1\r\n" % i for i in range(60)) + b"\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 431")
    s.close()


def test_metrics_need_the_configured_token(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/metrics").status_code == 401
    assert httpx.get(gw.url + "/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    r = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "bytespike_" in r.text


def test_database_files_are_readable_by_their_owner_only(gw: Gateway) -> None:
    path = gw.db_url.split(":///", 1)[1]
    for p in (path, f"{path}-wal", f"{path}-shm", f"{path}.gateway-lock"):
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_a_megabyte_model_name_is_not_echoed_back_whole(gw: Gateway) -> None:
    acct = gw.account(usd="1")
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                   json={"model": "m" * 1_000_000, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and len(r.content) < 1000


def test_client_org_and_project_headers_and_query_strings_do_not_reach_the_upstream(
        gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="1")
    fake.handler = Greedy()
    hdrs = {"authorization": f"Bearer {acct['key']}", "openai-organization": "org-victim",
            "openai-project": "proj-victim"}
    r = httpx.post(gw.url + "/v1/chat/completions?api-version=evil&beta=true", headers=hdrs, timeout=30,
                   json={"model": "gpt-5-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    r2 = httpx.post(gw.url + "/v1/messages?beta=true&key=evil", headers={**V, "x-api-key": acct["key"]}, timeout=30,
                    json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and r2.status_code == 200, (r.text, r2.text)
    sent = fake.received
    assert sent, "nothing reached the upstream"
    for got in sent:
        assert "openai-organization" not in got.headers and "openai-project" not in got.headers
        assert "evil" not in got.query
    assert any(got.query == "beta=true" for got in sent if got.path.endswith("/v1/messages"))


def test_deeply_nested_json_gets_a_400_naming_the_problem_not_a_500(gw: Gateway, fake: FakeUpstream) -> None:
    acct = gw.account(usd="1")
    nested = '{"a":' * 300 + "1" + "}" * 300
    anthropic_h = {**V, "x-api-key": acct["key"]}
    openai_h = {"authorization": f"Bearer {acct['key']}"}
    tool = '[{"name":"t","description":"d","input_schema":{"type":"object","properties":' + nested + "}}]"
    fn = '[{"type":"function","function":{"name":"t","parameters":{"type":"object","properties":' + nested + "}}}]"
    cases = [
        ("/v1/messages", anthropic_h, "claude-3-5-haiku-20241022", tool),  # native, renamed: re-encoded
        ("/v1/messages", anthropic_h, "gemini-3-1-pro", tool),
        ("/v1/messages", anthropic_h, "gpt-5-5", tool),
        ("/v1/chat/completions", openai_h, "claude-haiku-4-5", fn),
        ("/v1/chat/completions", openai_h, "gemini-3-1-pro", fn),
    ]
    statuses = []
    for path, h, model, tools in cases:
        body = ('{"model":"' + model + '","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":'
                + tools + "}")
        before = len(fake.received)
        r = httpx.post(gw.url + path, headers={**h, "content-type": "application/json"}, content=body, timeout=30)
        # Either the translation bounds the schema itself, or the client hears why, before any upstream call.
        assert r.status_code in (200, 400), (path, model, r.text)
        if r.status_code == 400:
            assert "254 levels" in r.text and len(fake.received) == before
        statuses.append(r.status_code)
    assert statuses[0] == 400
    assert "Traceback" not in gw.log.read_text()
