"""The pure core of ironhub's tamper-evident audit log (issue 4).

Records are canonical JSON, hash-chained and leaves of an RFC 9162 Merkle tree; the hub signs
checkpoints (tree size and root) with Ed25519; an export (header, record lines, checkpoint
lines) can be verified offline, and inclusion and consistency proofs let an auditor check one
record or one extension of the log against a signed root.

Nothing here touches files, sockets, clocks or asyncio: times are passed in, and records,
lines, proofs and exports travel as bytes. The audit service stores what this package builds
and feeds back what it stored. Errors follow python-tuf's split: everything that means "the
log lies" is an :class:`~ironhub.errors.AuditIntegrityError` (its subclass
:class:`~ironhub.errors.AuditFormatError` for what cannot even be parsed), carrying the first
bad record position and export line when known; bad arguments when *building* are
:class:`~ironhub.errors.ValidationError`; I/O failures are the caller's
(:class:`~ironhub.errors.StorageError`), never an audit error.

Modules (private, re-exported here):

* ``_records``: :class:`AuditRecord`, the canonical body, the record hash and line, and the
  field rules in its docstring;
* ``_merkle``: RFC 9162 §2.1 hashing, :class:`TreeBuilder`, inclusion and consistency proofs
  and their verifiers, and the decisions for sizes the RFC leaves out;
* ``_checkpoint``: :class:`Checkpoint`, the signed note, signing, verification and the
  checkpoint line;
* ``_verify``: the export format, :func:`verify_export` with its theory of operation, and the
  incremental :class:`ChainVerifier`.
"""

from __future__ import annotations

from ironhub.audit._checkpoint import (
    Checkpoint,
    checkpoint_line,
    key_id,
    parse_checkpoint_line,
    sign_checkpoint,
    signed_note,
    verify_checkpoint,
)
from ironhub.audit._merkle import (
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from ironhub.audit._records import (
    ACTOR_KINDS,
    GENESIS,
    MAX_FIELD_CHARS,
    OUTCOMES,
    AuditRecord,
    build_record,
    encode_record,
    parse_line,
    record_hash,
    record_line,
)
from ironhub.audit._verify import (
    EXPORT_FORMAT,
    ChainVerifier,
    VerifyReport,
    export_header,
    verify_export,
)

__all__ = [
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
]
