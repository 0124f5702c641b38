"""The data directory: created once with 0600 secrets, refused when half-made or exposed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ironhub.errors import ConfigError
from ironhub.server import DataFiles, ensure_trust_material, init_hub


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_trust_material_and_prints_the_token_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = init_hub(data, ("hub.example",))
    assert first.created
    assert first.first_admin_token is not None
    assert first.first_admin_token.startswith("ihk_")
    assert first.hostname == "hub.example"
    files = DataFiles(data)
    assert mode(data) == 0o700
    for secret in (files.ca_key, files.server_key, files.kek, files.database):
        assert mode(secret) == 0o600, secret
    second = init_hub(data, ("hub.example",))
    assert not second.created
    assert second.first_admin_token is None
    # The token never lands in a file of the data directory in clear.
    for path in data.iterdir():
        assert first.first_admin_token.encode() not in path.read_bytes(), path


def test_half_made_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_hub(data)
    DataFiles(data).kek.unlink()
    with pytest.raises(ConfigError, match=r"incomplete data directory, missing kek\.key"):
        ensure_trust_material(data, ("localhost",))


def test_database_without_keys_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_hub(data)
    files = DataFiles(data)
    for path in (files.ca_key, files.ca_cert, files.kek):
        path.unlink()
    with pytest.raises(ConfigError, match="refusing to create new keys"):
        ensure_trust_material(data, ("localhost",))


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_hub(data)
    DataFiles(data).kek.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_trust_material(data, ("localhost",))


def test_server_certificate_is_reissued_for_new_host_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init_hub(data)
    files = DataFiles(data)
    before = files.server_cert.read_bytes()
    ensure_trust_material(data, ("localhost",))
    assert files.server_cert.read_bytes() == before
    ensure_trust_material(data, ("hub.example",))
    assert files.server_cert.read_bytes() != before
    assert mode(files.server_key) == 0o600
