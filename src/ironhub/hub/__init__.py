"""The device endpoint: TLS listener, MQTT sessions, authentication, authorisation, routing.

Protocol and security *rules* live in pure modules (``ironhub.codec``, ``ironhub.pki``,
:mod:`ironhub.hub.ratelimit`); this package wires them to sockets, the registry and the log.
"""
