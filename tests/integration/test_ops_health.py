"""Health, metrics and alerts of a real ``mailflow run`` (issue 15, evidence).

- after a cycle, ``/metrics`` counts what was ingested, opened and sent, and
  ``/healthz`` is 200 with the mailbox connected; ``mailflow status`` agrees;
- the IMAP password goes wrong: ``/healthz`` turns 503, the administrator's INBOX
  gets one alert, and one recovery mail once the password is right again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mailflow.mailstack import PASSWORD, MailStack, free_port
from tests.conftest import CUSTOMER, SUPPORT
from tests.integration.opsproc import (
    Daemon,
    env,
    headers,
    healthz,
    http_get,
    mailflow,
    metric,
    upgrade,
    wait_until,
    write_config,
)
from tests.mails import mail

ADMIN = "other@example.test"
BOX = f"{SUPPORT}/INBOX"


def _ops(port: int) -> str:
    return (f"metrics:\n  listen: 127.0.0.1:{port}\n"
            f"alerts:\n  admin: {ADMIN}\n  after: 2s\n")


def test_metrics_and_healthz_after_a_cycle(stack: MailStack, sqlite_url: str,
                                           tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(stack, sqlite_url, tmp_path, _ops(port))
    upgrade(cfg)
    stack.append(SUPPORT, [mail(subject=f"Metrics {i}") for i in range(3)])
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        assert len(stack.wait_for(CUSTOMER, 3, timeout=30)) == 3

        def scraped() -> str | None:
            status, body = http_get(f"http://127.0.0.1:{port}/metrics")
            text = body.decode()
            sent = 'mailflow_mail_total{kind="acknowledgment",outcome="sent"}'
            return text if status == 200 and metric(text, sent) == 3 else None

        text = wait_until(scraped, 20, what="3 acknowledgments counted in /metrics")
        assert metric(text, 'mailflow_messages_ingested_total{outcome="new"}') == 3
        assert metric(text, "mailflow_tickets_opened_total") == 3
        assert metric(text, "mailflow_ingest_latency_seconds_count") == 3
        assert metric(text, "mailflow_delivery_latency_seconds_count") == 3
        assert metric(text, 'mailflow_outbox_depth{status="pending"}') == 0
        assert metric(text, f'mailflow_mailbox_up{{mailbox="{BOX}"}}') == 1
        assert "mailflow_escalations_fired_total" in text

        status, body = healthz(port)
        assert status == 200 and body["status"] == "ok", body
        (box,) = body["mailboxes"]
        assert box["name"] == BOX and box["connected"] and box["last_success"]
        assert body["outbox"]["backlog"] == 0 and body["last_digest"] is None

        st = subprocess.run(mailflow(cfg, "status"), env=env(), capture_output=True,
                            text=True, timeout=30)
        assert st.returncode == 0, st.stdout + st.stderr
        assert "daemon: ok (HTTP 200)" in st.stdout and f"mailbox {BOX}: connected" in st.stdout
        assert "outbox: 0 pending" in st.stdout
        assert stack.messages(ADMIN) == []  # nothing wrong, no alert
    finally:
        assert d.stop() == 0
    assert PASSWORD not in d.text()


def test_wrong_imap_password_alerts_once_and_recovers_once(stack: MailStack,
                                                          sqlite_url: str,
                                                          tmp_path: Path) -> None:
    port = free_port()
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD + "\n")
    cfg = write_config(stack, sqlite_url, tmp_path, _ops(port))
    cfg.write_text(cfg.read_text().replace("password_env: MAILFLOW_IMAP_PASSWORD",
                                           f"password_file: {secret}"))
    upgrade(cfg)
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_until(lambda: healthz(port)[1].get("mailboxes", [{}])[0].get("last_success"),
                   30, what="a first good cycle")
        assert healthz(port)[0] == 200
        # The password changes on the server's side of things: mailflow's copy is now
        # wrong. Restarting Dovecot drops the watcher's session; its next login fails.
        secret.write_text("not-the-password\n")
        stack.stop_dovecot()
        stack.start_dovecot()

        def failing() -> dict | None:
            status, body = healthz(port)
            return body if status == 503 else None

        body = wait_until(failing, 30, what="/healthz to turn 503")
        assert body["status"] == "failing" and BOX in body["problems"][0], body
        assert "login refused" in body["mailboxes"][0]["last_error"], body
        alerts = wait_until(lambda: stack.messages(ADMIN), 30, what="the alert mail")
        assert len(alerts) == 1 and b"ALERT: mailbox support@example.test/INBOX is down" \
            in alerts[0]

        secret.write_text(PASSWORD + "\n")
        wait_until(lambda: healthz(port)[0] == 200, 90, what="/healthz back to 200")
        got = wait_until(lambda: len(stack.messages(ADMIN)) >= 2 and stack.messages(ADMIN),
                         30, what="the recovery mail")
        # Still down for a while after the alert, yet only one alert; one recovery.
        subjects = [h["Subject"] for h in headers(stack, ADMIN, "Subject")]
        assert len(got) == 2 and subjects[0].startswith("ALERT:"), subjects
        assert subjects[1].startswith("RECOVERED: mailbox support@example.test/INBOX")
    finally:
        assert d.stop() == 0
    log = d.text()
    assert "ALERT: mailbox" in log and "not-the-password" not in log and PASSWORD not in log


def test_smtp_down_is_in_healthz_and_the_alert_waits_for_smtp(stack: MailStack,
                                                               sqlite_url: str,
                                                               tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(stack, sqlite_url, tmp_path,
                       _ops(port) + "outbox:\n  retry_initial: 1s\n  retry_max: 2s\n")
    upgrade(cfg)
    stack.stop_smtp()
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        stack.append(SUPPORT, [mail(subject="While SMTP is down")])

        def failing() -> dict | None:
            status, body = healthz(port)
            return body if status == 503 else None

        body = wait_until(failing, 40, what="/healthz to report the sender down")
        assert body["problems"][0].startswith("sender: cannot deliver since"), body
        assert "alert mail waits in the outbox" in body["notes"][0]
        assert body["outbox"]["backlog"] >= 1
        wait_until(lambda: "ALERT: the SMTP sender is down" in d.text(), 20,
                   what="the alert in the log")
        assert stack.messages(ADMIN) == []  # it cannot leave: that is the point
        stack.start_smtp()
        got = wait_until(lambda: len(stack.messages(ADMIN)) >= 2 and stack.messages(ADMIN),
                         60, what="the alert and the recovery, once SMTP is back")
        subjects = sorted(h["Subject"] for h in headers(stack, ADMIN, "Subject"))
        assert len(got) == 2 and subjects[0].startswith("ALERT: the SMTP sender is down")
        assert subjects[1].startswith("RECOVERED: the SMTP sender works again")
        assert len(stack.wait_for(CUSTOMER, 1, timeout=30)) == 1
        wait_until(lambda: healthz(port)[0] == 200, 30, what="/healthz back to 200")
    finally:
        if stack._controller is None:
            stack.start_smtp()
        assert d.stop() == 0


def test_one_failing_mailbox_never_stops_the_others(stack: MailStack, sqlite_url: str,
                                                    tmp_path: Path) -> None:
    """A folder that cannot be selected fails alone: the INBOX is still served, and the
    JSON log names the failing mailbox on each of its lines."""
    import json

    port = free_port()
    cfg = write_config(stack, sqlite_url, tmp_path, _ops(port),
                       imap_extra="  extra_folders:\n    - folder: Missing\n")
    upgrade(cfg)
    d = Daemon(cfg, tmp_path / "daemon.log", "--log-format", "json")
    try:
        stack.append(SUPPORT, [mail(subject="Served despite the other folder")])
        assert len(stack.wait_for(CUSTOMER, 1, timeout=30)) == 1

        def failing() -> dict | None:
            status, body = healthz(port)
            return body if status == 503 else None

        body = wait_until(failing, 30, what="/healthz to name the missing folder")
        assert body["problems"] == [p for p in body["problems"]
                                    if p.startswith(f"mailbox {SUPPORT}/Missing:")]
        boxes = {m["name"]: m for m in body["mailboxes"]}
        assert boxes[BOX]["connected"] and not boxes[BOX]["down"]
        alert = wait_until(lambda: stack.messages(ADMIN), 30, what="the alert")
        assert len(alert) == 1 and b"Missing is down" in alert[0]
    finally:
        assert d.stop() == 0
    lines = [json.loads(line) for line in d.text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "event", "logger"} <= set(o) for o in lines)
    missing = [o for o in lines if o.get("mailbox") == f"{SUPPORT}/Missing"]
    assert any(o["level"] == "warning" and "select failed" in o["event"] for o in missing)
    assert any(o["level"] == "error" and o["event"].startswith("ALERT: mailbox")
               for o in missing)
