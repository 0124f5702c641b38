"""The audit log's routes: checkpoints, proofs, records and the portable export.

What a verifier needs is served here; the verification itself is :mod:`ironhub.audit` (pure),
run by ``ironhub audit verify`` offline with only the public key. Reading records and proofs
needs read access; the export, a complete copy of the log, needs admin access and is itself
recorded in the log before it starts.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import msgspec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.responses import StreamingResponse

from ironhub.access.roles import Permission
from ironhub.api._http import json_response
from ironhub.api._routes import Operation, QueryParam
from ironhub.audit import Checkpoint, key_id
from ironhub.errors import NotFoundError, StorageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.responses import Response

    from ironhub.api._routes import Context
    from ironhub.audit.service import AuditLog

__all__ = ["AUDIT_OPERATIONS"]

_MAX_RECORDS_PER_PAGE = 1000
_INT = {"type": "integer", "minimum": 0}


class AuditKeyView(msgspec.Struct, kw_only=True):
    """The key that verifies checkpoints (``public_key``: raw 32 bytes, base64)."""

    origin: str
    key_id: str
    public_key: str
    pem: str


class AuditRecordView(msgspec.Struct, kw_only=True):
    """One record as exported: its hash and its canonical body (a JSON object)."""

    hash: str
    record: msgspec.Raw


class AuditRecordPage(msgspec.Struct, kw_only=True):
    """Records from ``start`` in order; pass ``next_start`` as ``start`` to continue."""

    records: list[AuditRecordView]
    next_start: int


class InclusionProofView(msgspec.Struct, kw_only=True):
    """Record ``seq`` is leaf ``seq`` of the tree of ``tree_size`` records with ``root``."""

    seq: int
    tree_size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyProofView(msgspec.Struct, kw_only=True):
    """The tree of ``old_size`` records is a prefix of the tree of ``new_size`` records."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]


def _audit(ctx: Context) -> AuditLog:
    audit = ctx.services.audit
    if audit is None:
        raise StorageError("the audit log is not running")
    return audit


def _int(ctx: Context, name: str, *, default: int | None = None) -> int:
    return ctx.query_int(name, default=default, minimum=0, maximum=2**62)


async def show_checkpoint(ctx: Context) -> Response:
    """``GET /audit/checkpoint``: the newest signed checkpoint (signed now if needed)."""
    checkpoint = await _audit(ctx).checkpoint()
    if checkpoint is None:
        raise NotFoundError("the audit log is empty")
    return json_response(checkpoint)


async def show_key(ctx: Context) -> Response:
    """``GET /audit/public-key``: what ``ironhub audit verify --public-key`` needs."""
    audit = _audit(ctx)
    key = audit.public_key
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return json_response(
        AuditKeyView(
            origin=audit.origin,
            key_id=key_id(key),
            public_key=base64.b64encode(raw).decode(),
            pem=pem,
        )
    )


async def list_records(ctx: Context) -> Response:
    """``GET /audit/records?start=&limit=``: committed records from a position on."""
    start = _int(ctx, "start", default=0)
    limit = ctx.query_int("limit", default=100, minimum=1, maximum=_MAX_RECORDS_PER_PAGE)
    rows = await _audit(ctx).read(after_seq=start - 1, limit=limit)
    records = [AuditRecordView(hash=h.hex(), record=msgspec.Raw(body)) for h, body in rows]
    return json_response(AuditRecordPage(records=records, next_start=start + len(records)))


async def inclusion(ctx: Context) -> Response:
    """``GET /audit/proofs/inclusion?seq=&tree_size=``."""
    audit = _audit(ctx)
    seq = _int(ctx, "seq")
    tree_size = _int(ctx, "tree_size", default=audit.size)
    proof = audit.inclusion_proof(seq, tree_size)
    leaf = (await audit.read(after_seq=seq - 1, limit=1))[0][0]
    return json_response(
        InclusionProofView(
            seq=seq,
            tree_size=tree_size,
            leaf_hash=leaf.hex(),
            root=audit.root(tree_size).hex(),
            proof=[p.hex() for p in proof],
        )
    )


async def consistency(ctx: Context) -> Response:
    """``GET /audit/proofs/consistency?old_size=&new_size=``."""
    audit = _audit(ctx)
    old_size = _int(ctx, "old_size")
    new_size = _int(ctx, "new_size", default=audit.size)
    proof = audit.consistency_proof(old_size, new_size)
    return json_response(
        ConsistencyProofView(
            old_size=old_size,
            new_size=new_size,
            old_root=audit.root(old_size).hex(),
            new_root=audit.root(new_size).hex(),
            proof=[p.hex() for p in proof],
        )
    )


async def export(ctx: Context) -> Response:
    """``GET /audit/export``: the portable export (JSON lines), recorded before it starts."""
    audit = _audit(ctx)
    await ctx.audit("audit-export", audit.origin)

    async def lines() -> AsyncIterator[bytes]:
        async for line in audit.export():
            yield line + b"\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="ironhub-audit.jsonl"'},
    )


AUDIT_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/audit/checkpoint",
        operation_id="showAuditCheckpoint",
        summary="The newest signed checkpoint of the audit log",
        permission=Permission.AUDIT_READ,
        handler=show_checkpoint,
        # The pure module's own record: the API shows exactly what is signed and exported.
        response=Checkpoint,
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/audit/public-key",
        operation_id="showAuditKey",
        summary="The Ed25519 key that verifies audit checkpoints",
        permission=Permission.AUDIT_READ,
        handler=show_key,
        response=AuditKeyView,
    ),
    Operation(
        method="GET",
        path="/audit/records",
        operation_id="listAuditRecords",
        summary="Audit records after a position, in order",
        permission=Permission.AUDIT_READ,
        handler=list_records,
        response=AuditRecordPage,
        query=(
            QueryParam("start", "the first position to return (default 0)", _INT),
            QueryParam(
                "limit",
                "page size",
                {"type": "integer", "minimum": 1, "maximum": _MAX_RECORDS_PER_PAGE},
            ),
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/audit/proofs/inclusion",
        operation_id="auditInclusionProof",
        summary="RFC 9162 inclusion proof of one record",
        permission=Permission.AUDIT_READ,
        handler=inclusion,
        response=InclusionProofView,
        query=(
            QueryParam("seq", "the record's position", _INT),
            QueryParam("tree_size", "the tree (default: the whole committed log)", _INT),
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/audit/proofs/consistency",
        operation_id="auditConsistencyProof",
        summary="RFC 9162 consistency proof between two tree sizes",
        permission=Permission.AUDIT_READ,
        handler=consistency,
        response=ConsistencyProofView,
        query=(
            QueryParam("old_size", "the older tree", _INT),
            QueryParam("new_size", "the newer tree (default: the whole committed log)", _INT),
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/audit/export",
        operation_id="exportAudit",
        summary="The whole audit log as JSON lines with signed checkpoints",
        permission=Permission.AUDIT_EXPORT,
        handler=export,
        media_type="application/x-ndjson",
    ),
)
