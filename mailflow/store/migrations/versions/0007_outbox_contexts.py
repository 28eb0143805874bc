"""Outbox context shared by several rows (an escalation step's notices), stored once

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows keep their whole context: NULL reference, nothing to backfill.
    op.create_table(
        "outbox_contexts",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbox_contexts")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shared_context", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_shared_context_outbox_contexts"), "outbox_contexts",
            ["shared_context"], ["key"])


def downgrade() -> None:
    # Rows that share a context get it back whole before the reference goes.
    bind = op.get_bind()
    outbox = sa.table("outbox", sa.column("id", sa.Integer()),
                      sa.column("context", sa.JSON()),
                      sa.column("shared_context", sa.String()))
    contexts = sa.table("outbox_contexts", sa.column("key", sa.String()),
                        sa.column("context", sa.JSON()))
    shared = dict(bind.execute(sa.select(contexts.c.key, contexts.c.context)).all())
    for oid, own, key in bind.execute(
            sa.select(outbox.c.id, outbox.c.context, outbox.c.shared_context)
            .where(outbox.c.shared_context.is_not(None))).all():
        bind.execute(outbox.update().where(outbox.c.id == oid)
                     .values(context={**shared[key], **(own or {})}))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_outbox_shared_context_outbox_contexts"),
                                 type_="foreignkey")
        batch_op.drop_column("shared_context")
    op.drop_table("outbox_contexts")
