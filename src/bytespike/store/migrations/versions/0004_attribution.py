"""Usage records name the Claude Code session and agent that made them.

Revision ID: 0004_attribution
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_attribution"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("session_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("agent_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("parent_agent_id", sa.String(128), nullable=True))
    op.create_index("ix_usage_session", "usage_records", ["account_id", "session_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_session", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("parent_agent_id")
        batch.drop_column("agent_id")
        batch.drop_column("session_id")
