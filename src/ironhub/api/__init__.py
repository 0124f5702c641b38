"""The operator HTTPS API: Starlette routes over the hub's services, msgspec schemas, OpenAPI.

Public surface: :func:`create_app` builds the application from a
:class:`~ironhub.services.Services`; :func:`close_streams` ends live tails before shutdown;
:mod:`ironhub.api.schemas` holds the wire types. The route table and handlers are private.
"""

from __future__ import annotations

from ironhub.api.app import api_state, close_streams, create_app

__all__ = ["api_state", "close_streams", "create_app"]
