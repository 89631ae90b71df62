"""Configuration: ${ENV} interpolation, overrides, and errors that name the file, line and field."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bytespike.config import BUILTIN, ConfigError, load, parse

GOOD = """\
database_url: sqlite:///./x.db
admin_token: ${ADMIN}
providers:
  anthropic: {type: anthropic, base_url: https://api.anthropic.com, api_key: ${ANTHROPIC_UPSTREAM_KEY}}
  openai:    {type: openai, base_url: "${OPENAI_BASE:-https://api.openai.com/v1}", api_key: ${OPENAI_API_KEY}}
models:
  claude-sonnet-4-6:
    aliases: [claude-3-5-sonnet-20241022]
    price: {input: 3, output: 15, cache_write: 3.75, cache_write_1h: 6, cache_read: 0.3}
    deployments:
      - {provider: anthropic, model: claude-sonnet-4-6, priority: 0, weight: 1}
groups:
  claude-default: {models: ["claude-*"], multiplier: 1}
  multi-vendor:   {models: ["*"], multiplier: 1.25}
"""


def test_spec_example_loads_with_env_interpolation():
    s = parse(GOOD, "b.yaml", {"ADMIN": "tok", "ANTHROPIC_UPSTREAM_KEY": "sk-ant-1", "OPENAI_API_KEY": "sk-oa"})
    assert s.admin_token == "tok"
    assert s.providers["anthropic"].api_key == "sk-ant-1"
    assert s.providers["openai"].base_url == "https://api.openai.com/v1"
    assert s.models["claude-sonnet-4-6"].price["cache_read"] == Decimal("0.3")
    assert s.groups["multi-vendor"].multiplier == Decimal("1.25")


def test_env_default_and_override_variables():
    s = parse(GOOD, "b.yaml", {"OPENAI_BASE": "http://127.0.0.1:9/v1", "BYTESPIKE_DATABASE_URL": "sqlite:///y.db",
                              "BYTESPIKE_ADMIN_TOKEN": "over"})
    assert s.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert s.database_url == "sqlite:///y.db"
    assert s.admin_token == "over"


@pytest.mark.parametrize("broken,line,field", [
    (GOOD.replace("type: openai", "type: opneai"), 5, "providers.openai.type"),
    (GOOD.replace("input: 3,", "input: three,"), 9, "models.claude-sonnet-4-6.price.input"),
    (GOOD.replace("provider: anthropic,", "provider: antropic,"), 11,
     "models.claude-sonnet-4-6.deployments[0].provider"),
    (GOOD.replace("multiplier: 1.25", "multiplier: -2"), 14, "groups.multi-vendor.multiplier"),
    (GOOD.replace("admin_token", "admin_tokn"), 2, "admin_tokn"),
    (GOOD.replace("base_url: https://api.anthropic.com", "base_url: ftp://x"), 4, "providers.anthropic.base_url"),
])
def test_errors_name_the_line_and_field(broken, line, field):
    with pytest.raises(ConfigError) as exc:
        parse(broken, "bytespike.yaml", {})
    msg = str(exc.value)
    assert msg.startswith(f"bytespike.yaml:{line}: {field}:"), msg


def test_not_yaml_names_the_line():
    with pytest.raises(ConfigError, match=r"^c.yaml:3: not valid YAML"):
        parse("models:\n  a: {price: 1\n  b: [\n", "c.yaml", {})


def test_builtin_catalogue_has_the_spec_models():
    s = load(None, environ={})
    assert s.source == BUILTIN
    assert set(s.models) == {"claude-sonnet-4-6", "claude-opus-4-8", "claude-haiku-4-5", "deepseek-v3-anthropic",
                             "deepseek-v4-pro", "gemini-3-1-pro", "gpt-5-5", "claude-fable-5"}
    assert s.models["claude-sonnet-4-6"].aliases == ("claude-3-5-sonnet-20241022", "claude-3-7-sonnet-20250219",
                                                     "claude-sonnet-4-20250514")
    assert s.models["claude-opus-4-8"].aliases == ("claude-opus-4-20250514",)
    assert s.models["claude-haiku-4-5"].aliases == ("claude-3-5-haiku-20241022",)
    assert set(s.groups) == {"claude-default", "multi-vendor"}


def test_serve_with_a_bad_file_fails_at_start_naming_line_and_field(tmp_path: Path):
    bad = tmp_path / "bytespike.yaml"
    bad.write_text(GOOD.replace("weight: 1", "weight: 0"))
    res = subprocess.run([sys.executable, "-m", "bytespike", "serve", "--config", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert f"{bad}:11: models.claude-sonnet-4-6.deployments[0].weight: weight must be at least 1" in \
        res.stderr.replace("\n", "")


def test_builtin_catalogue_resolves_the_google_model_ids_gemini_cli_uses():
    from bytespike.gateway.catalogue import Catalogue

    catalogue = Catalogue(load(None, environ={}))
    for google_id in ("gemini-3.1-pro-preview", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-3.1-flash-lite",
                      "gemini-3-flash-preview", "gemini-2.5-flash-lite"):
        resolved = catalogue.resolve(google_id)
        assert resolved is not None and resolved.model.id == "gemini-3-1-pro", google_id
        assert resolved.asked == google_id
def test_redis_policy_defaults_to_closed_and_a_bad_one_names_its_line():
    assert parse(GOOD, "b.yaml", {}).redis_policy == "closed"
    assert parse(GOOD + "redis_policy: open\n", "b.yaml", {}).redis_policy == "open"
    assert parse(GOOD, "b.yaml", {"BYTESPIKE_REDIS_POLICY": "open"}).redis_policy == "open"
    with pytest.raises(ConfigError, match=r"^b.yaml:15: redis_policy: expected one of closed, open"):
        parse(GOOD + "redis_policy: sometimes\n", "b.yaml", {})
    with pytest.raises(ConfigError, match="BYTESPIKE_REDIS_POLICY"):
        parse(GOOD, "b.yaml", {"BYTESPIKE_REDIS_POLICY": "maybe"})
