"""Accounts, users, keys, ledger, holds, usage records.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(320), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("org_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("limits", sa.Text, nullable=False, server_default="[]"),
        sa.Column("max_concurrency", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True, unique=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_ledger_account", "ledger", ["account_id", "id"])
    op.create_table(
        "holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_holds_account", "holds", ["account_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("account_id", sa.String(40), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("model_asked", sa.String(200), nullable=False),
        sa.Column("model_used", sa.String(200), nullable=True),
        sa.Column("provider", sa.String(100), nullable=True),
        sa.Column("upstream_model", sa.String(200), nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_write_5m_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_write_1h_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error_type", sa.String(40), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("ttft_ms", sa.Float, nullable=True),
    )
    op.create_index("ix_usage_key_time", "usage_records", ["key_id", "created_at"])
    op.create_index("ix_usage_account_time", "usage_records", ["account_id", "created_at"])


def downgrade() -> None:
    for index, table in (
        ("ix_usage_account_time", "usage_records"),
        ("ix_usage_key_time", "usage_records"),
        ("ix_holds_account", "holds"),
        ("ix_ledger_account", "ledger"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("usage_records", "holds", "ledger", "api_keys", "users", "accounts"):
        op.drop_table(table)
