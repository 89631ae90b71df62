"""Tables. All SQL lives in ``store``; amounts are integer nano-USD, times are epoch seconds."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(8), nullable=False),  # "user" (a person's own wallet) or "org"
    Column("name", String(320), nullable=False, unique=True),  # the email, or the org's name
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),  # the wallet it spends
    Column("org_id", String(40), ForeignKey("accounts.id"), nullable=True),
    Column("password_hash", String(200), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=True),
    Column("group_name", String(100), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("limits", Text, nullable=False, default="[]"),  # JSON list of window specs
    Column("max_concurrency", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # topup | charge | refund | adjustment
    Column("amount", BigInteger, nullable=False),  # signed nano-USD
    Column("balance_after", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=True, unique=True),
    Column("key_id", String(40), nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)
Index("ix_ledger_account", ledger.c.account_id, ledger.c.id)

holds = Table(
    "holds",
    metadata,
    Column("id", String(64), primary_key=True),  # the request id
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_holds_account", holds.c.account_id)
Index("ix_holds_key", holds.c.key_id, holds.c.expires_at)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("account_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("protocol", String(16), nullable=False),
    Column("model_asked", String(200), nullable=False),
    Column("model_used", String(200), nullable=True),
    Column("provider", String(100), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cache_read_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_5m_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, default=0),
    Column("cost", BigInteger, nullable=False, default=0),
    Column("status", String(24), nullable=False),  # succeeded | failed | client_disconnected | refused
    Column("http_status", Integer, nullable=False),
    Column("error_type", String(40), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("ttft_ms", Float, nullable=True),
    # Claude Code's x-claude-code-session-id / -agent-id / -parent-agent-id, when sent
    Column("session_id", String(128), nullable=True),
    Column("agent_id", String(128), nullable=True),
    Column("parent_agent_id", String(128), nullable=True),
    Column("task_id", String(40), nullable=True),  # the task this request ran, if any
)
Index("ix_usage_key_time", usage_records.c.key_id, usage_records.c.created_at)
Index("ix_usage_account_time", usage_records.c.account_id, usage_records.c.created_at)
Index("ix_usage_session", usage_records.c.account_id, usage_records.c.session_id)
Index("ix_usage_task", usage_records.c.task_id)


device_grants = Table(
    "device_grants",
    metadata,
    Column("device_hash", String(64), primary_key=True),  # SHA-256 of the device code
    Column("user_code", String(16), nullable=False, unique=True),
    Column("client_id", String(200), nullable=False),
    Column("scope", String(400), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("interval", Integer, nullable=False),
    Column("last_poll_at", Float, nullable=True),
    Column("status", String(12), nullable=False),  # pending | approved | denied | used
    Column("user_id", String(40), ForeignKey("users.id"), nullable=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=True),
    Column("group_name", String(100), nullable=True),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family", String(40), nullable=False),  # every rotation of one sign-in
    Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False),  # the access token it came with
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("group_name", String(100), nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)
Index("ix_refresh_family", refresh_tokens.c.family)
Index("ix_refresh_user", refresh_tokens.c.user_id)

memberships = Table(
    "memberships",
    metadata,
    Column("org_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),  # owner | member
    Column("created_at", Float, nullable=False),
)
Index("ix_memberships_user", memberships.c.user_id)

invites = Table(
    "invites",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("org_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("email", String(320), nullable=True),  # only this person may accept, when set
    Column("created_by", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("accepted_at", Float, nullable=True),
    Column("accepted_by", String(40), nullable=True),
)

redeem_codes = Table(
    "redeem_codes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),  # nano-USD credited
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("redeemed_at", Float, nullable=True),
    Column("redeemed_by", String(40), nullable=True),  # the account credited
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("provider", String(16), nullable=False),  # stripe
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("user_id", String(40), nullable=True),
    Column("session_id", String(255), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),  # nano-USD asked for
    Column("status", String(16), nullable=False),  # open | paid
    Column("created_at", Float, nullable=False),
    Column("paid_at", Float, nullable=True),
    Column("event_id", String(255), nullable=True),
)
Index("ix_payments_account", payments.c.account_id, payments.c.created_at)

payment_events = Table(
    "payment_events",
    metadata,
    Column("event_id", String(255), primary_key=True),  # each provider event is handled once
    Column("type", String(100), nullable=False),
    Column("received_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(320), nullable=False, default=""),
    Column("details", Text, nullable=False, default="{}"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_login_failures", login_failures.c.email, login_failures.c.ip, login_failures.c.created_at)
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("request", Text, nullable=False),  # the endpoint's request body, JSON
    Column("headers", Text, nullable=True),  # anthropic-version / anthropic-beta given at submission, JSON
    Column("metadata", Text, nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | succeeded | failed | canceled | expired
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("not_before", Float, nullable=False),  # a queued task is not taken before this
    Column("deadline_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("lease_token", String(40), nullable=True),
    Column("lease_expires", Float, nullable=True),
    Column("request_id", String(64), nullable=True),  # the request that produced the result or error
    Column("http_status", Integer, nullable=True),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("usage", Text, nullable=True),
    Column("cost", BigInteger, nullable=True),
    Column("webhook_state", String(12), nullable=True),  # pending | delivered | failed
    Column("webhook_next_at", Float, nullable=True),
    Column("webhook_attempts", Integer, nullable=False, default=0),
)
Index("ix_tasks_account_created", tasks.c.account_id, tasks.c.created_at)
Index("ix_tasks_status", tasks.c.status, tasks.c.not_before)
Index("ix_tasks_webhook", tasks.c.webhook_state, tasks.c.webhook_next_at)
Index("ix_tasks_idempotency", tasks.c.account_id, tasks.c.idempotency_key, unique=True)

task_deliveries = Table(
    "task_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
)
Index("ix_task_deliveries_task", task_deliveries.c.task_id, task_deliveries.c.id)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    # Kept as given: signing needs the secret itself (as with any HMAC webhook scheme).
    Column("secret", String(80), nullable=False),
    Column("created_at", Float, nullable=False),
)
