"""Device sign-in (RFC 8628) for Claude Code's gateway login: pending grants and refresh tokens.

Revision ID: 0005_device_sign_in
Revises: 0004_attribution
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_device_sign_in"
down_revision = "0004_attribution"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_grants",
        sa.Column("device_hash", sa.String(64), primary_key=True),
        sa.Column("user_code", sa.String(16), nullable=False, unique=True),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(400), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("last_poll_at", sa.Float, nullable=True),
        sa.Column("status", sa.String(12), nullable=False),  # pending | approved | denied | used
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=True),
        sa.Column("group_name", sa.String(100), nullable=True),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("family", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_refresh_family", "refresh_tokens", ["family"])
    op.create_index("ix_refresh_user", "refresh_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_user", table_name="refresh_tokens")
    op.drop_index("ix_refresh_family", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("device_grants")
