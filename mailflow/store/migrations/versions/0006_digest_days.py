"""The digest's stored figures of closed days, and the indexes its day scan needs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Derived data: empty at first, filled by the next digest (which computes the missing
    # days once), so nothing to backfill.
    op.create_table(
        "digest_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("basis", sa.String(length=120), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("rule_hits", sa.JSON(), nullable=False),
        sa.Column("events_upto", sa.BigInteger(), nullable=False),
        sa.Column("events_seen", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", "basis", name=op.f("pk_digest_days")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)
    with op.batch_alter_table("ticket_clocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_clocks_stopped_at"), ["stopped_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_clocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_clocks_stopped_at"))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))
    op.drop_table("digest_days")
