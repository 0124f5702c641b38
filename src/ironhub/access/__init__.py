"""Operator access: API tokens now; accounts, roles (RBAC) and MFA follow.

:mod:`ironhub.access.tokens` issues and checks the bearer tokens of the operator API.
"""
