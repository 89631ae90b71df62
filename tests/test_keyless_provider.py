"""A provider configured without an api_key (a local or keyless endpoint) is still called."""

from __future__ import annotations

import anthropic
import pytest

from conftest import Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream


def test_provider_without_api_key_is_still_called(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("keyless")
    cfg = gateway_config(fake.url, d / "bytespike.db")
    del cfg["providers"]["anthropic"]["api_key"]
    gw = Gateway(d, cfg).start()
    try:
        a = gw.account(group="claude-default")
        c = anthropic.Anthropic(base_url=gw.url, api_key=a["key"], max_retries=0)
        msg = c.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert "simulated" in msg.content[0].text
        assert a["key"] not in str(fake.requests_to("/anthropic/v1/messages")[-1].headers)
        assert "no api_key configured" in gw.log.read_text()
    finally:
        gw.stop()
