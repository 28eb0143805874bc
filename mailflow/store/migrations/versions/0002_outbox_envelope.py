"""outbox envelope columns (no more `_envelope` inside the template context)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("references", sa.JSON(), nullable=False,
                                      server_default="[]"))
        batch_op.add_column(sa.Column("auto_submitted", sa.String(length=40), nullable=False,
                                      server_default="auto-replied"))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("auto_submitted")
        batch_op.drop_column("references")
        batch_op.drop_column("in_reply_to")
        batch_op.drop_column("reply_token")
