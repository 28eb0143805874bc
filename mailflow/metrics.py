"""Prometheus metrics of one daemon: what it ingested, opened, sent and fired, and how long
mail waited on the way.

Counters and histograms live in a registry of their own (not prometheus_client's
global one), so tests and ``run --once`` can build as many as they like. The outbox
depth is read from the database at scrape time: it is the same for every process on
one database, and a gauge kept in memory would be wrong after a restart. Names are
listed in docs/operations.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mailflow.liveness import Liveness

# Outcomes of ingest that open a ticket (mailflow.linking.Action).
OPENING = ("new", "new-linked")
# Seconds: mail that waits minutes is what an administrator needs to see; 1 h and more
# means intake or delivery was down.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400)


class _OutboxDepth(Collector):
    """``mailflow_outbox_depth{status}`` and the age of the oldest due row, per scrape."""

    def __init__(self, read: Callable[[], tuple[Mapping[str, int], float | None]]):
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            depth, oldest = self.read()
        except Exception:  # noqa: BLE001 - a scrape must answer even when the db is down
            return []
        g = GaugeMetricFamily("mailflow_outbox_depth", "Outbox rows by status "
                              "(pending, sending, failed).", labels=["status"])
        for status, n in sorted(depth.items()):
            g.add_metric([status], n)
        age = GaugeMetricFamily("mailflow_outbox_oldest_due_seconds",
                                "How long the oldest due outbox row has waited (0: none).")
        age.add_metric([], oldest or 0.0)
        return [g, age]


class Metrics:
    """The daemon's instruments; the hooks of watchers, sender and scheduler call these."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ingested = Counter("mailflow_messages_ingested", "Messages committed by ingest, "
                                "by outcome (new, join, reopen, duplicate, quarantined...).",
                                ["outcome"], registry=r)
        self.opened = Counter("mailflow_tickets_opened", "Tickets opened by ingest.",
                              registry=r)
        self.mail = Counter("mailflow_mail", "Outgoing mail by kind and outcome (sent, "
                            "retrying, failed).", ["kind", "outcome"], registry=r)
        self.escalations = Counter("mailflow_escalations_fired", "Escalation steps fired.",
                                   registry=r)
        self.restarts = Counter("mailflow_task_restarts", "Daemon tasks restarted after a "
                                "failure, by task.", ["task"], registry=r)
        self.ingest_latency = Histogram(
            "mailflow_ingest_latency_seconds", "From the mail's arrival on the IMAP server "
            "(INTERNALDATE) to its commit.", buckets=LATENCY_BUCKETS, registry=r)
        self.delivery_latency = Histogram(
            "mailflow_delivery_latency_seconds", "From queueing a mail to the SMTP "
            "server's 250.", buckets=LATENCY_BUCKETS, registry=r)
        self.mailbox_up = Gauge("mailflow_mailbox_up", "1 when the mailbox's last cycle "
                                "worked, 0 while it fails; absent where another process owns "
                                "it.", ["mailbox"], registry=r)

    def watch_outbox(self, read: Callable[[], tuple[Mapping[str, int], float | None]]) -> None:
        self.registry.register(_OutboxDepth(read))

    # -- hooks ------------------------------------------------------------------------------
    def on_batch(self, outcomes: Mapping[str, int], arrived: list[datetime | None],
                 now: datetime) -> None:
        for outcome, n in outcomes.items():
            self.ingested.labels(outcome).inc(n)
        opened = sum(outcomes.get(o, 0) for o in OPENING)
        if opened:
            self.opened.inc(opened)
        for when in arrived:
            if when is not None:
                self.ingest_latency.observe(max(0.0, (now - when).total_seconds()))

    def on_mail(self, kind: str, outcome: str, latency: float | None) -> None:
        self.mail.labels(kind, outcome).inc()
        if latency is not None:
            self.delivery_latency.observe(max(0.0, latency))

    def on_restart(self, task: str, _exc: BaseException) -> None:
        self.restarts.labels(task).inc()

    def refresh(self, live: Liveness) -> None:
        """Mailbox gauges from the shared state, just before a scrape."""
        for key, part in live.mailboxes.items():
            v = part.view()
            if v.owned:
                self.mailbox_up.labels(key).set(0 if v.failing_since else 1)
            else:
                with contextlib.suppress(KeyError):
                    self.mailbox_up.remove(key)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
