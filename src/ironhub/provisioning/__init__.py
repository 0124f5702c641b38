"""DPS-compatible provisioning: enrollments, attestation, assignment, claim tokens, device CA."""
