"""End to end: a Dovecot INBOX -> tickets -> acknowledgments delivered into Dovecot.

One ``mailflow run --once`` (``daemon.run_once`` on a fresh SQLite database, app built
inside the clock) on a seeded mailbox of realistic support mail, against the real
loopback stack: Dovecot, and an SMTP server (``mailstack.LmtpRelay``) that answers 250
only once the mail is in the recipient's Dovecot INBOX. Acknowledgments (and the staff
notifications the shipped rules ask for) are counted in the recipients' mailboxes, not
in our database.

The same run measures the baselines, against the same servers:

- raw IMAP ``FETCH BODY.PEEK[]`` of the mailbox (as ``bench/ingest.py``);
- raw SMTP with aiosmtplib over 1 and N connections, sending the very mails mailflow
  sent (same bytes, same recipients; one header renamed);
- the same two and one mailflow run against a discarding SMTP sink (answers 250 and
  drops the mail): the sender's own ceiling, where the server costs nothing.

The "serial ideal" is fetching everything at the raw rate, then sending every
mail at the raw one-connection rate; that send is measured right after each mailflow
run, so that each ratio compares two figures taken under the same load (the machine is
shared; its load moves within minutes). The stack and the sink each run in a
process of their own, as they would for a user: their Python does not share
mailflow's GIL. Every recipient gets one small mail before anything is measured, so
that no run pays for Dovecot making 1,000 maildirs that its baseline finds made.

    .venv/bin/python bench/e2e.py [--messages 2000] [--connections 1,4] [--sink-connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiosmtplib
from sqlalchemy import select

from bench.ingest import _body, raw_fetch_rate
from bench.servers import server
from mailflow import config as config_mod
from mailflow.app import build
from mailflow.daemon import run_once
from mailflow.mailstack import PASSWORD, MailStack
from mailflow.store.db import make_engine, upgrade
from mailflow.store.models import OutboxRow

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = "support@example.test"
SUBJECTS = ("Cannot log in since this morning", "Invoice {n} is wrong", "Printer on floor {n}",
            "VPN drops every few minutes", "Password reset does not arrive",
            "Order {n} never arrived", "Website shows error 500", "Need access to folder {n}",
            "Backup failed last night", "Licence key rejected", "Mail stuck in outbox",
            "Slow database reports")
DJANGO_HELPDESK = 31.9  # msg/s, same mailbox and stack (issue 16); not re-measured here


# -- the mailbox ------------------------------------------------------------------------------

def customers(n: int) -> list[str]:
    return [f"customer{i}@customers.test" for i in range(n)]


def staff() -> list[str]:
    """Addresses the shipped rules send mail to (tier groups, managers): mailboxes too."""
    found = {a for f in (ROOT / "rules").rglob("*") if f.is_file()
             for a in re.findall(r"[\w.+-]+@example\.test", f.read_text())}
    return sorted(found - {SUPPORT})


def make_mailbox(n: int, people: list[str], seed: int = 16) -> list[bytes]:
    """Seeded support mail: new requests, ~21 % replies to earlier ones (threaded by
    In-Reply-To), ~3 % automatic mail (out-of-office and the
    like, which gets no acknowledgment), 1-4 KB bodies, a few HTML alternatives."""
    rng = random.Random(seed)
    date = format_datetime(datetime(2026, 1, 5, 9, tzinfo=UTC))
    sent: list[tuple[str, str, str]] = []
    out: list[bytes] = []
    for i in range(n):
        who = rng.choice(people)
        name = who.split("@")[0].replace("customer", "Customer ")
        mid = f"<e2e.{i}.{rng.getrandbits(48):x}@customers.test>"
        head = [f"From: {name} <{who}>", f"To: Support <{SUPPORT}>", f"Date: {date}",
                f"Message-ID: {mid}", "MIME-Version: 1.0"]
        roll = rng.random()
        if roll < 0.212 and sent:
            osender, omid, osubj = rng.choice(sent)
            head[0] = f"From: Customer <{osender}>"
            head += [f"Subject: Re: {osubj}", f"In-Reply-To: {omid}", f"References: {omid}"]
            text = (_body(rng, rng.randint(200, 900)) + "\n\nOn Monday you wrote:\n> "
                    + _body(rng, 300).replace("\n", "\n> "))
        else:
            subj = rng.choice(SUBJECTS).format(n=rng.randint(1, 9999))
            if roll > 0.97:
                head.append("Auto-Submitted: auto-replied")
                subj = f"Out of office: {subj}"
            head.append(f"Subject: {subj}")
            sent.append((who, mid, subj))
            text = _body(rng, rng.randint(800, 3600))
        text = text.replace("\n", "\r\n") + "\r\n"
        if rng.random() < 0.15:
            html = "<html><body><p>" + text.replace("\r\n", "<br>\r\n") + "</p></body></html>"
            head.append('Content-Type: multipart/alternative; boundary="b1"')
            body = ("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text
                    + "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
                    + "\r\n--b1--\r\n")
        else:
            head += ["Content-Type: text/plain; charset=utf-8",
                     "Content-Transfer-Encoding: 8bit"]
            body = text
        out.append(("\r\n".join(head) + "\r\n\r\n" + body).encode())
    return out


# -- measurements -------------------------------------------------------------------------------

def warm_up(port: int, people: list[str]) -> float:
    """One small mail to each recipient before anything is measured: Dovecot makes a
    user's maildir and index files on the first delivery, which made whichever run
    came first pay for 1,000 new mailboxes while the raw baseline after it did not.
    Returns the seconds it took (not part of any figure)."""
    mails = [(SUPPORT, who, (f"From: <{SUPPORT}>\r\nTo: <{who}>\r\nSubject: warm-up\r\n"
                             f"Message-ID: <warm.{i}@example.test>\r\n\r\nwarm-up\r\n").encode())
             for i, who in enumerate(people)]
    return raw_smtp(port, mails, 4)


def delivered(stack: MailStack, people: list[str]) -> int:
    """Mail in these people's INBOXes, counted by Dovecot."""
    total = 0
    for user in people:
        with stack.imap(user) as c:
            total += int(c.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"])
    return total


def unmark(stack: MailStack) -> None:
    """Make the support INBOX new again for the next run."""
    with stack.imap(SUPPORT) as c:
        c.select_folder("INBOX")
        c.remove_flags(c.search("ALL"), [b"\\Seen", b"$MailflowProcessed"], silent=True)


def raw_smtp(port: int, mails: list[tuple[str, str, bytes]], connections: int) -> float:
    """Seconds to send every mail with plain aiosmtplib over this many connections."""
    async def one(part: list[tuple[str, str, bytes]]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for sender, rcpt, raw in part:
            await client.sendmail(sender, [rcpt], raw)
        await client.quit()

    async def all_of_them() -> None:
        await asyncio.gather(*(one(mails[i::connections]) for i in range(connections)))

    t0 = time.perf_counter()
    asyncio.run(all_of_them())
    return time.perf_counter() - t0


def mailflow_once(work: Path, imap_port: int, smtp_port: int, connections: int,
                  tag: str) -> tuple[float, Any, str]:
    """One `mailflow run --once` on a fresh database: (seconds, result, database URL)."""
    url = f"sqlite:///{work / f'{tag}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    imap: dict[str, Any] = {"host": "127.0.0.1", "port": imap_port, "security": "none",
                            "username": SUPPORT, "password_env": "MAILFLOW_IMAP_PASSWORD",
                            "batch_size": 500}
    smtp: dict[str, Any] = {"host": "127.0.0.1", "port": smtp_port, "security": "none"}
    # Keys older code lacks are left out, so the same script measures it too.
    if "backlog" in config_mod.ImapSettings.model_fields:
        # The seeded mail is there before mailflow's first look: answer it as new mail
        # (the default would import it without acknowledgments).
        imap["backlog"] = "acknowledge"
    if "connections" in config_mod.SmtpSettings.model_fields:
        smtp["connections"] = connections
    settings = config_mod.validate({
        "database": url, "support_address": SUPPORT, "imap": imap, "smtp": smtp,
        "rules_dir": str(ROOT / "rules"),
    }, base_dir=work)
    t0 = time.perf_counter()
    app = build(settings)
    try:
        res = run_once(app)
    finally:
        secs = time.perf_counter() - t0
        app.close()
    return secs, res, url


def peak_rss(work: Path, imap_port: int, smtp_port: int, connections: int) -> None:
    """`mailflow run --once` as a user runs it (its own process, the CLI) on a fresh
    database; prints the peak RSS (VmHWM) of it and of each worker process it starts."""
    cfg = work / "rss.yaml"
    cfg.write_text(
        f"database: sqlite:///{work / 'rss.db'}\nsupport_address: {SUPPORT}\n"
        f"rules_dir: {ROOT / 'rules'}\n"
        f"imap: {{host: 127.0.0.1, port: {imap_port}, security: none, username: {SUPPORT},"
        f" password_env: MAILFLOW_IMAP_PASSWORD, backlog: acknowledge}}\n"
        f"smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none,"
        f" connections: {connections}}}\n")
    exe = [sys.executable, "-m", "mailflow", "--config", str(cfg)]
    subprocess.run([*exe, "db", "upgrade"], check=True, capture_output=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*exe, "run", "--once"], stdout=subprocess.PIPE)
    peak: dict[int, tuple[str, int]] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                what = "mailflow run --once" if pid == proc.pid else _role(pid, cmd.decode())
            except OSError:
                continue  # ended meanwhile
            hwm = re.search(r"VmHWM:\s+(\d+)", status)
            if hwm is None:
                continue  # a zombie: its figure was read while it ran
            kb = int(hwm.group(1))
            peak[pid] = (what, max(kb, peak.get(pid, ("", 0))[1]))
        time.sleep(0.2)
    out = proc.stdout.read().decode() if proc.stdout else ""
    print(f"{time.perf_counter() - t0:.1f}s: {out.strip()}")
    for pid, (what, kb) in sorted(peak.items()):
        print(f"  peak RSS {kb / 1024:6.1f} MiB  pid {pid}: {what}")


def _role(pid: int, cmd: str) -> str:
    """What a helper process is. Workers carry their fork server's command line, so
    they are told apart by parentage: the parse and the render worker are both children
    of the fork server."""
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "forkserver" in cmd:
        parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
        return "worker (parse or render)" if b"forkserver" in parent_cmd else "fork server"
    return cmd[-60:]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def sent_mails(url: str) -> tuple[list[tuple[str, str, bytes]], dict[str, int]]:
    """What mailflow sent, as raw SMTP input with a header renamed (same size), and how
    many of each kind."""
    engine = make_engine(url)
    with engine.connect() as c:
        rows = c.execute(select(OutboxRow.mail_from, OutboxRow.recipient, OutboxRow.raw,
                                OutboxRow.kind)
                         .where(OutboxRow.status == "sent").order_by(OutboxRow.id)).all()
    engine.dispose()
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
    return [(f, r, (raw or b"").replace(b"X-Mailflow-Ticket:", b"X-Benchmark-Copy:", 1))
            for f, r, raw, _ in rows], kinds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--connections", default="1,4",
                    help="smtp.connections values to run mailflow with (comma-separated)")
    ap.add_argument("--sink-connections", type=int, default=4)
    ap.add_argument("--rss", action="store_true",
                    help="only: peak RSS of `mailflow run --once` into the sink")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    n_raw = max([*conns, args.sink_connections])

    work = Path(tempfile.mkdtemp(prefix="mailflow-e2e-"))
    os.chmod(work, 0o755)
    # Databases and the stack's mailboxes: 0.3 GB a run, 1.8 GB at --rss 100000.
    atexit.register(shutil.rmtree, work, True)
    os.environ["MAILFLOW_IMAP_PASSWORD"] = PASSWORD
    people = customers(args.customers)
    mailbox = make_mailbox(args.messages, people)
    recipients = people + staff()
    rows: list[tuple[str, float, float | None, str, str]] = []
    with server("stack", work / "stack", [SUPPORT, *recipients]) as ports, \
            server("sink", work, []) as sink:
        stack = MailStack(root=work / "stack", imap_port=ports["imap"],
                          smtp_port=ports["smtp"])
        with stack.imap(SUPPORT) as c:
            for i in range(0, len(mailbox), 200):
                c.multiappend("INBOX", mailbox[i:i + 200])
        avg = sum(map(len, mailbox)) / len(mailbox)
        print(f"mailbox: {len(mailbox)} messages (avg {avg:.0f} bytes), "
              f"{args.customers} customers; load: {os.getloadavg()}")
        if args.rss:
            del mailbox
            peak_rss(work, stack.imap_port, sink["smtp"], args.sink_connections)
            return
        print(f"maildirs made by one mail to each of {len(recipients)} recipients: "
              f"{warm_up(stack.smtp_port, recipients):.1f}s (not measured)")
        n, fetch_secs = raw_fetch_rate(stack)
        rows.append(("raw FETCH BODY.PEEK[] (1 connection)", n / fetch_secs, None, "", _load()))

        # Each mailflow run is followed at once by the raw one-connection send of the
        # very mails it sent: on a shared machine the load moves within minutes, and a
        # ratio is only fair against a baseline taken under the same load.
        url = ""
        plan = [(k, False) for k in conns] + [(args.sink_connections, True)]
        for i, (k, into_sink) in enumerate(plan):
            if i:
                unmark(stack)
            before = 0 if into_sink else delivered(stack, recipients)
            port = sink["smtp"] if into_sink else stack.smtp_port
            secs, res, url = mailflow_once(work, stack.imap_port, port, k,
                                           "sink" if into_sink else f"real{i}-{k}")
            load = _load()
            got = len(res.delivery.sent) if into_sink else \
                delivered(stack, recipients) - before
            mails, kinds = sent_mails(url)
            raw1 = raw_smtp(port, mails, 1)
            ideal = fetch_secs + raw1
            what = (f"mailflow run --once into the sink, smtp.connections {k} ({got} sent)"
                    if into_sink else
                    f"mailflow run --once, smtp.connections {k} ({got} in the INBOXes)")
            print(f"{what}: {secs:.2f}s, fetched {res.fetched} {dict(res.outcomes)}, sent "
                  f"{len(res.delivery.sent)}, retrying {len(res.delivery.retrying)}, failed "
                  f"{len(res.delivery.failed)}; then raw SMTP, 1 connection: {raw1:.2f}s, "
                  f"serial ideal {ideal:.2f}s, ratio {ideal / secs:.2f}; load {load}")
            rows.append((what, res.fetched / secs, ideal / secs, "", load))

        acks = len(mails)
        avg_ack = sum(len(m[2]) for m in mails) / max(1, acks)
        for what, port, k in (("into the stack", stack.smtp_port, 1),
                              ("into the stack", stack.smtp_port, n_raw),
                              ("into the discarding sink", sink["smtp"], 1),
                              ("into the discarding sink", sink["smtp"], n_raw)):
            secs = raw_smtp(port, mails, k)
            rows.append((f"raw SMTP {what}, {k} connection{'s' if k > 1 else ''}",
                         acks / secs, None, "mails/s", _load()))

    print(f"\nmail sent per run: {acks} {kinds} (avg {avg_ack:.0f} bytes); serial ideal of "
          f"each run = fetch {fetch_secs:.2f}s + the raw one-connection send of its mails, "
          "measured right after it")
    print(f"django-helpdesk, same mailbox and stack (issue 16): {DJANGO_HELPDESK} msg/s\n")
    print(f"| {'what':<72} | {'rate':>14} | ratio to serial ideal | x django-helpdesk | "
          "load (1/5/15 min) |")
    print(f"| {'-' * 72} | {'-' * 14} | --- | --- | --- |")
    for what, rate, ratio, unit, load in rows:
        unit = unit or "msg/s"
        r = f"{ratio:.2f}" if ratio is not None else ""
        x = f"{rate / DJANGO_HELPDESK:.0f}x" if ratio is not None else ""
        print(f"| {what:<72} | {rate:>8,.0f} {unit:<5} | {r} | {x} | {load} |")


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
