"""The public surface of ironhub.audit is its __all__, and the bulk schema mirrors the record."""

from __future__ import annotations

import msgspec
from tests.unit.audit.auditkit import AuditKit

from ironhub import audit
from ironhub.audit._records import AuditRecord, BulkRecord, RecordLine
from ironhub.errors import AuditError, AuditFormatError, AuditIntegrityError, IronhubError

EXPECTED = {
    "ACTOR_KINDS",
    "EXPORT_FORMAT",
    "GENESIS",
    "MAX_FIELD_CHARS",
    "OUTCOMES",
    "AuditRecord",
    "ChainVerifier",
    "Checkpoint",
    "TreeBuilder",
    "VerifyReport",
    "build_record",
    "checkpoint_line",
    "consistency_proof",
    "encode_record",
    "export_header",
    "inclusion_proof",
    "key_id",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint_line",
    "parse_line",
    "record_hash",
    "record_line",
    "root_hash",
    "sign_checkpoint",
    "signed_note",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
}


def test_all_is_exactly_the_documented_surface() -> None:
    assert set(audit.__all__) == EXPECTED
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_the_constants() -> None:
    assert audit.GENESIS == "0" * 64
    assert {"operator", "device", "hub"} == audit.ACTOR_KINDS
    assert {"ok", "refused", "failed"} == audit.OUTCOMES
    assert audit.MAX_FIELD_CHARS == 1024


def test_the_error_tree() -> None:
    assert issubclass(AuditError, IronhubError)
    assert issubclass(AuditIntegrityError, AuditError)
    assert issubclass(AuditFormatError, AuditIntegrityError)
    error = AuditFormatError("broken", position=3, line=5)
    assert (str(error), error.position, error.line) == ("broken", 3, 5)
    assert AuditIntegrityError("lies").position is None
    assert AuditIntegrityError("lies").line is None


def test_the_bulk_schema_mirrors_the_record() -> None:
    names = [field.name for field in msgspec.structs.fields(AuditRecord)]
    assert names == [field.name for field in msgspec.structs.fields(BulkRecord)]
    log = AuditKit().log(12)
    text = b"[" + b",".join(log.lines) + b"]"
    decoded = msgspec.json.decode(text, type=list[RecordLine])
    assert msgspec.json.encode(decoded) == text
    for line, body in zip(decoded, log.bodies, strict=True):
        assert msgspec.json.encode(line.record) == body
        assert msgspec.structs.asdict(line.record) == msgspec.structs.asdict(
            msgspec.json.decode(body, type=AuditRecord)
        )
