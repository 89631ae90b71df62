"""The ``tasks:`` configuration section: defaults, values, and errors naming file, line and field."""

from __future__ import annotations

import pytest

from bytespike.config import ConfigError, TasksConfig, parse

BASE = """\
models:
  m:
    price: {input: 1, output: 2}
    deployments: [{provider: p}]
providers:
  p: {type: anthropic, base_url: https://example.com}
"""


def test_without_a_tasks_section_the_defaults_apply() -> None:
    assert parse(BASE, "b.yaml", {}).tasks == TasksConfig()
    assert TasksConfig().retention_days == 30 and TasksConfig().allow_private_webhooks is False


def test_the_tasks_section_sets_caps_policy_and_timings() -> None:
    s = parse(BASE + "tasks:\n  max_running: 40\n  max_running_per_account: 2\n  allow_private_webhooks: true\n"
                     "  retention_days: 7\n  backoff_seconds: 0.5\n", "b.yaml", {})
    assert (s.tasks.max_running, s.tasks.max_running_per_account, s.tasks.allow_private_webhooks,
            s.tasks.retention_days, s.tasks.backoff_seconds) == (40, 2, True, 7.0, 0.5)


@pytest.mark.parametrize(("section", "line", "field"), [
    ("tasks:\n  max_runing: 4\n", 8, "tasks.max_runing"),
    ("tasks:\n  max_running: 0\n", 8, "tasks.max_running"),
    ("tasks:\n  max_running: 2.5\n", 8, "tasks.max_running"),
    ("tasks:\n  lease_seconds: soon\n", 8, "tasks.lease_seconds"),
    ("tasks:\n  allow_private_webhooks: maybe\n", 8, "tasks.allow_private_webhooks"),
    ("tasks:\n  default_deadline_seconds: 100\n  max_deadline_seconds: 50\n", 8, "tasks.default_deadline_seconds"),
    ("tasks: [1]\n", 7, "tasks"),
])
def test_a_bad_tasks_field_fails_naming_its_line_and_field(section: str, line: int, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(BASE + section, "bytespike.yaml", {})
    assert str(exc.value).startswith(f"bytespike.yaml:{line}: {field}:"), str(exc.value)
