"""The admin API's OpenAPI document, fuzzed with schemathesis against a real gateway: no 500s,
every answer inside the documented schema, and no answer carrying a stored hash or upstream key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as sc
from schemathesis.specs.openapi import checks as oc

from adminclient import Admin
from conftest import ADMIN_TOKEN, Gateway
from conftest import test_config as gateway_config
from fakeupstream import FakeUpstream

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [sc.not_a_server_error, oc.status_code_conformance, oc.content_type_conformance,
          oc.response_schema_conformance, oc.response_headers_conformance, oc.negative_data_rejection]


@pytest.fixture(scope="module")
def fuzzed(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("gw-fuzz")
    gw = Gateway(d, gateway_config(fake.url, d / "bytespike.db")).start()
    admin = Admin(gw)  # something to find: a person, an org with a member, a key, a code
    admin.post("/users", {"email": "fuzz@example.com", "password": "a fine passphrase"}, 201)
    admin.post("/orgs", {"name": "fuzz-org"}, 201)
    admin.post("/orgs/fuzz-org/members", {"email": "owner@fuzz.test", "role": "owner"})
    admin.post("/keys", {"account": "fuzz@example.com"}, 201)
    admin.post("/redeem-codes", {"usd": "1"}, 201)
    yield gw
    gw.stop()


def _operations(gw: Gateway) -> list[Any]:
    loaded = schemathesis.openapi.from_url(gw.url + "/admin/v1/openapi.json", headers=AUTH)
    return [r.ok() for r in loaded.get_all_operations()]


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_the_admin_api_answers_every_generated_request_inside_its_schema_and_never_500(fuzzed: Gateway,
                                                                                       mode: Any) -> None:
    secrets = Admin(fuzzed).secrets()
    operations = _operations(fuzzed)
    assert len(operations) >= 20
    for op in operations:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url=fuzzed.url, headers=AUTH, checks=CHECKS)
            assert not any(s in response.text for s in secrets), response.text[:300]
            assert "$argon2" not in response.text

        run()


def test_the_openapi_document_lists_every_admin_route(fuzzed: Gateway) -> None:
    doc = httpx.get(fuzzed.url + "/admin/v1/openapi.json", headers=AUTH).json()
    assert doc["openapi"].startswith("3.1")
    paths = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for needed in [("POST", "/admin/v1/users"), ("GET", "/admin/v1/users"), ("POST", "/admin/v1/orgs"),
                   ("POST", "/admin/v1/orgs/{name}/members"), ("POST", "/admin/v1/wallets/{account}/topup"),
                   ("GET", "/admin/v1/wallets/{account}/topup"), ("POST", "/admin/v1/keys"), ("GET", "/admin/v1/keys"),
                   ("POST", "/admin/v1/keys/{id}/revoke"), ("POST", "/admin/v1/redeem-codes"),
                   ("GET", "/admin/v1/usage"), ("GET", "/admin/v1/providers"), ("GET", "/admin/v1/audit")]:
        assert needed in paths, needed
    assert doc["components"]["securitySchemes"]["admin"]["scheme"] == "bearer"
