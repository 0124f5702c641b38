"""Operator access: roles (RBAC), operator accounts with MFA, API tokens.

:mod:`ironhub.access.roles` and :mod:`ironhub.access.policy` hold the pure rules (which role
grants which permission; passwords, TOTP, lockout, sessions, sources);
:mod:`ironhub.access.tokens` issues and checks the bearer tokens of the operator API (automation
tokens and login sessions); :mod:`ironhub.access.operators` manages operator accounts and their
logins (docs/adr/0011).
"""
