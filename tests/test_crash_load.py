"""``kill -9`` under load loses at most the charges of the answers of the last ``CRASH_LOSS_SECONDS``
(README, "Money"): settlements are written behind the answers, in batches."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import Gateway, free_port
from conftest import test_config as gateway_config

V = {"anthropic-version": "2023-06-01"}
CRASH_LOSS_SECONDS = 0.5  # the README's figure


@pytest.fixture()
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway in front of the built-in simulator, which runs in its own process so the load
    generator here does not slow the upstream down."""
    d = tmp_path_factory.mktemp("crashload")
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "uvicorn", "bytespike.demo.simulator:app", "--port", str(port),
                            "--log-level", "critical", "--no-access-log"])
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.time() < deadline, "the simulator did not start"
            time.sleep(0.05)
    gw = Gateway(d, gateway_config(f"http://127.0.0.1:{port}", d / "bytespike.db")).start()
    yield gw
    gw.stop()
    sim.terminate()
    sim.wait(10)


def test_kill_9_under_load_loses_at_most_the_documented_window_of_charges(loaded: Gateway) -> None:
    acct = loaded.account(usd="1000")
    answered: list[tuple[float, str]] = []
    body = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}

    async def client(c: httpx.AsyncClient, stop: float) -> None:
        while time.time() < stop:
            try:
                r = await c.post("/v1/messages", json=body)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                answered.append((time.time(), r.headers["request-id"]))

    async def run() -> float:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=loaded.url, limits=limits, timeout=10,
                                     headers={**V, "x-api-key": acct["key"]}) as c:
            start = time.time()
            clients = [asyncio.create_task(client(c, start + 30)) for _ in range(64)]
            await asyncio.sleep(3)
            assert loaded.proc is not None
            loaded.proc.send_signal(signal.SIGKILL)
            killed = time.time()
            await asyncio.gather(*clients)
            return killed - start

    elapsed = asyncio.run(run())
    loaded.proc.wait()  # type: ignore[union-attr]
    rate = len(answered) / elapsed
    ids = [rid for _, rid in answered]
    marks = ",".join("?" * len(ids))
    charged = {r[0] for r in loaded.query(f"SELECT request_id FROM ledger WHERE request_id IN ({marks})", *ids)}
    lost = [rid for rid in ids if rid not in charged]
    assert len(ids) > 100, f"only {len(ids)} answers: too little load to measure"
    print(f"{rate:.0f} answers/s, {len(lost)} lost = {len(lost) / rate * 1000:.0f} ms of answers")
    assert lost, "nothing was in flight: the kill measured nothing"
    # Lost answers are the newest ones, and there are no more than the documented window holds.
    assert len(lost) <= rate * CRASH_LOSS_SECONDS, (len(lost), rate)
    assert loaded.query("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM ledger "
                        "WHERE request_id IS NOT NULL")[0][0] == 0
    recorded = loaded.query(f"SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM usage_records "
                            f"WHERE request_id IN ({marks})", *ids)[0]
    charges = -loaded.query(f"SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE request_id IN ({marks})", *ids)[0][0]
    assert recorded == (len(charged), charges)
