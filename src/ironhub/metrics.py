"""Prometheus metrics of one hub process, served at ``/metrics``.

One private :class:`CollectorRegistry` per :class:`Metrics` so parallel hubs in one test
process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The counters, gauges and histograms every part of the hub updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "ironhub_connections", "Authenticated device connections", registry=r
        )
        self.preauth_connections = Gauge(
            "ironhub_preauth_connections", "Connections not yet authenticated", registry=r
        )
        self.connects_total = Counter(
            "ironhub_connects", "Successful device authentications", registry=r
        )
        self.auth_failures_total = Counter(
            "ironhub_auth_failures", "Refused device authentications", ["reason"], registry=r
        )
        self.messages_total = Counter(
            "ironhub_messages", "Messages accepted from devices", ["stream"], registry=r
        )
        self.messages_refused_total = Counter(
            "ironhub_messages_refused", "Publishes refused", ["reason"], registry=r
        )
        self.protocol_errors_total = Counter(
            "ironhub_protocol_errors", "Connections closed for protocol errors", registry=r
        )
        self.method_calls_total = Counter(
            "ironhub_method_calls",
            "Direct-method invocations by outcome",
            ["outcome"],
            registry=r,
        )
        self.cloud_messages_total = Counter(
            "ironhub_cloud_messages",
            "Cloud-to-device messages by outcome (queued, completed, expired, purged)",
            ["outcome"],
            registry=r,
        )
        self.twin_updates_total = Counter(
            "ironhub_twin_updates", "Twin changes by section source", ["source"], registry=r
        )
        self.live_tails = Gauge(
            "ironhub_live_tails", "Open live tails of the message log (SSE)", registry=r
        )
        self.audit_healthy = Gauge(
            "ironhub_audit_healthy",
            "1 while the audit log's last write succeeded; 0 raises the alarm",
            registry=r,
        )
        self.audit_healthy.set(1)
        self.audit_records_total = Counter(
            "ironhub_audit_records", "Audit records committed", registry=r
        )
        self.audit_failed_batches_total = Counter(
            "ironhub_audit_failed_batches", "Audit batches that could not be written", registry=r
        )
        self.commit_batch_size = Histogram(
            "ironhub_commit_batch_size",
            "Log entries per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ironhub_commit_seconds",
            "Duration of one group commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
