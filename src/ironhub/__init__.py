"""ironhub: a self-hosted, security-in-depth IoT hub.

The package layout follows ``ARCHITECTURE.md``: pure protocol and security rules live in
``codec``, ``pki`` and ``registry.sealing``; ``hub``, ``streams``, ``storage``, ``api`` and ``cli``
wire them to sockets, storage and clocks.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
