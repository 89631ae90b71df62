"""Index holds by key: limits decided in the database and rebuilt into Redis count a key's open holds.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_holds_key", "holds", ["key_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_holds_key", table_name="holds")
