"""The durable message log and its live consumers.

:mod:`ironhub.streams.log` puts a DUP de-duplication cache and a live fan-out in front of the
storage backend's group commit (embedded profile: SQLite; scale profile: NATS JetStream).
"""
