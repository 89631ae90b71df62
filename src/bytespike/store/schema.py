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
)
Index("ix_usage_key_time", usage_records.c.key_id, usage_records.c.created_at)
Index("ix_usage_account_time", usage_records.c.account_id, usage_records.c.created_at)
Index("ix_usage_session", usage_records.c.account_id, usage_records.c.session_id)


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
