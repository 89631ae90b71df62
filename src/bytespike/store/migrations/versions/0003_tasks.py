"""Async tasks, their webhook delivery log, accounts' webhook secrets; usage records name their task.

Revision ID: 0003_tasks
Revises: 0005_device_sign_in
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_tasks"
down_revision = "0002_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("task_id", sa.String(40), nullable=True))
    op.create_index("ix_usage_task", "usage_records", ["task_id"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("headers", sa.Text, nullable=True),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("webhook_url", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("deadline_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_expires", sa.Float, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("usage", sa.Text, nullable=True),
        sa.Column("cost", sa.BigInteger, nullable=True),
        sa.Column("webhook_state", sa.String(12), nullable=True),
        sa.Column("webhook_next_at", sa.Float, nullable=True),
        sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_tasks_account_created", "tasks", ["account_id", "created_at"])
    op.create_index("ix_tasks_status", "tasks", ["status", "not_before"])
    op.create_index("ix_tasks_webhook", "tasks", ["webhook_state", "webhook_next_at"])
    op.create_index("ix_tasks_idempotency", "tasks", ["account_id", "idempotency_key"], unique=True)
    op.create_table(
        "task_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
    )
    op.create_index("ix_task_deliveries_task", "task_deliveries", ["task_id", "id"])
    op.create_table(
        "webhook_secrets",
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("secret", sa.String(80), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.drop_index("ix_task_deliveries_task", "task_deliveries")
    op.drop_table("task_deliveries")
    for name in ("ix_tasks_idempotency", "ix_tasks_webhook", "ix_tasks_status", "ix_tasks_account_created"):
        op.drop_index(name, "tasks")
    op.drop_table("tasks")
    op.drop_index("ix_usage_task", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("task_id")
