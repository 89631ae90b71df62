"""Index holds by key: limits decided in the database and rebuilt into Redis count a key's open holds.

Revision ID: 0006_holds_by_key
Revises: 0003_tasks
"""

from alembic import op

revision = "0006_holds_by_key"
down_revision = "0003_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_holds_key", "holds", ["key_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_holds_key", table_name="holds")
