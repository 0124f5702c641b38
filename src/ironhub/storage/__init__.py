"""Storage: interfaces (:mod:`ironhub.storage.interfaces`) and the embedded SQLite backend.

Every other package reaches persistent state only through these interfaces, so that the
PostgreSQL backend (scale profile) can pass the same contract tests.
"""
