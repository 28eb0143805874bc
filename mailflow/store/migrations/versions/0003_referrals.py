"""referrals: a ticket sent to a tier group, with its own token (issue 11)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=True),
        sa.Column("eta", sa.DateTime(), nullable=True),
        sa.Column("next_update_due", sa.DateTime(), nullable=True),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name="fk_referrals_ticket_id_tickets"),
        sa.PrimaryKeyConstraint("id", name="pk_referrals"),
        sa.UniqueConstraint("token", name="uq_referrals_token"),
    )
    op.create_index("ix_referrals_ticket_id", "referrals", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_referrals_ticket_id", table_name="referrals")
    op.drop_table("referrals")
