"""Issue 10, item 7: a backlog of threaded mail in one batch lands thread by thread.

1,200 messages in 200 threads, replies to replies included, all in the INBOX before one
`run --once` with a batch size that takes them in one go: the tickets must equal the
threads built from the messages' References.
"""

from __future__ import annotations

import random
from collections import defaultdict

from sqlalchemy import select

from mailflow.daemon import run_once
from mailflow.mailstack import MailStack
from mailflow.store.models import StoredMessage
from tests.conftest import SUPPORT
from tests.mails import mail


def _threads(n_threads: int, per_thread: int, seed: int = 7) -> tuple[list[bytes], dict[str, int]]:
    """Messages in arrival order, and each Message-ID's thread number."""
    rng = random.Random(seed)
    thread_of: dict[str, int] = {}
    pending: list[tuple[int, list[str]]] = []  # (thread, ids so far)
    out: list[bytes] = []
    for t in range(n_threads):
        mid = f"t{t}.m0@customers.test"
        thread_of[mid] = t
        out.append(mail(sender=f"c{t}@customers.test", subject=f"Problem {t}",
                        message_id=f"<{mid}>"))
        pending.append((t, [mid]))
    # Replies in random order across threads; each answers a random earlier message of
    # its thread (a reply to a reply, often).
    todo = [t for t in range(n_threads) for _ in range(per_thread - 1)]
    rng.shuffle(todo)
    for t in todo:
        ids = pending[t][1]
        parent = rng.choice(ids)
        chain = ids[: ids.index(parent) + 1]
        mid = f"t{t}.m{len(ids)}@customers.test"
        thread_of[mid] = t
        sender = rng.choice([f"c{t}@customers.test", f"colleague{t}@customers.test"])
        # Half the clients name the whole chain, half only the message answered.
        refs = chain if rng.random() < 0.5 else [parent]
        out.append(mail(sender=sender, subject=f"Re: Problem {t}", message_id=f"<{mid}>",
                        headers={"In-Reply-To": f"<{parent}>",
                                 "References": " ".join(f"<{i}>" for i in refs)}))
        ids.append(mid)
    return out, thread_of


def test_a_backlog_of_threaded_mail_in_one_batch_lands_thread_by_thread(
        stack: MailStack, sqlite_url: str, make_app) -> None:
    msgs, thread_of = _threads(200, 6)
    assert len(msgs) == 1200
    app = make_app(stack, sqlite_url, imap={"batch_size": 2000},
                   acknowledgment={"max_per_sender_per_hour": 1000})
    with stack.imap(SUPPORT) as c:
        for i in range(0, len(msgs), 400):
            c.multiappend("INBOX", msgs[i:i + 400])
    res = run_once(app)
    assert res.fetched == 1200
    with app.sessions() as s:
        rows = s.execute(select(StoredMessage.message_id, StoredMessage.ticket_id)).all()
    tickets_of_thread: dict[int, set[int]] = defaultdict(set)
    threads_of_ticket: dict[int, set[int]] = defaultdict(set)
    for mid, tid in rows:
        tickets_of_thread[thread_of[mid]].add(tid)
        threads_of_ticket[tid].add(thread_of[mid])
    split = {t: ts for t, ts in tickets_of_thread.items() if len(ts) != 1}
    merged = {t: th for t, th in threads_of_ticket.items() if len(th) != 1}
    assert not split, f"threads spread over several tickets: {list(split.items())[:5]}"
    assert not merged, f"tickets holding several threads: {list(merged.items())[:5]}"
    assert len(threads_of_ticket) == 200
