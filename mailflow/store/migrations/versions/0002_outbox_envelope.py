"""ticket effects: outbox envelope columns, first-start backlog, mailbox identity

- outbox: the envelope in columns (no more `_envelope` inside the template context);
- mailbox_checkpoints: where the first look at a folder found its backlog;
- mailbox keys drop host and port (`user@host:port/INBOX` -> `user/INBOX`): a new server
  name for the same account is the same mailbox, UIDVALIDITY stays the guard.

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


def _new_key(old: str) -> str:
    account, sep, rest = old.rpartition("@")
    if not sep or "/" not in rest or ":" not in rest.split("/", 1)[0]:
        return old  # already in the new form
    return f"{account}/{rest.split('/', 1)[1]}"


def upgrade() -> None:
    with op.batch_alter_table("mailbox_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backlog_until_uid", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("skipped_until_uid", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    conn = op.get_bind()
    for table in ("mailbox_checkpoints", "messages", "quarantine"):
        rows = conn.execute(sa.text(
            f"SELECT DISTINCT mailbox FROM {table} WHERE mailbox IS NOT NULL")).all()
        for (old,) in rows:
            new = _new_key(old)
            if new != old:
                conn.execute(sa.text(f"UPDATE {table} SET mailbox = :new WHERE mailbox = :old"),
                             {"new": new, "old": old})
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("references", sa.JSON(), nullable=False,
                                      server_default="[]"))
        batch_op.add_column(sa.Column("auto_submitted", sa.String(length=40), nullable=False,
                                      server_default="auto-replied"))


def downgrade() -> None:
    with op.batch_alter_table("mailbox_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("skipped_until_uid")
        batch_op.drop_column("backlog_until_uid")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("auto_submitted")
        batch_op.drop_column("references")
        batch_op.drop_column("in_reply_to")
        batch_op.drop_column("reply_token")
