"""The ``ironhub`` command line: entry points only, no logic (see :mod:`ironhub.cli.main`)."""

from __future__ import annotations

__all__: list[str] = []
