"""SLA clocks and escalation: the next due time per ticket, stored clocks, fired steps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_due_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_next_due_at"), ["next_due_at"],
                              unique=False)
    # Open tickets from before this version: computed at the scheduler's first tick.
    op.execute("UPDATE tickets SET next_due_at = updated_at "
               "WHERE status IN ('open', 'referred', 'waiting')")
    op.create_table(
        "ticket_clocks",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("owner_group", sa.String(length=100), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("paused_seconds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_ticket_clocks_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("ticket_id", "kind", "episode", name=op.f("pk_ticket_clocks")),
    )
    with op.batch_alter_table("ticket_clocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_clocks_due_at"), ["due_at"], unique=False)
    op.create_table(
        "escalation_steps",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("clock", sa.String(length=20), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_escalation_steps_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("ticket_id", "chain", "step", "clock", "episode",
                                name=op.f("pk_escalation_steps")),
    )


def downgrade() -> None:
    op.drop_table("escalation_steps")
    with op.batch_alter_table("ticket_clocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_clocks_due_at"))
    op.drop_table("ticket_clocks")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_next_due_at"))
        batch_op.drop_column("next_due_at")
