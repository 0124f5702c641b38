"""Key custody rules that need no token: secret files, the PIN sources, the public surface.

The token itself is exercised against SoftHSM2 in tests/integration/test_custody.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ironhub import custody
from ironhub.config import HubConfig, KeysConfig
from ironhub.custody import KeyMaterial, open_key_material, read_secret_file
from ironhub.errors import ConfigError


def test_public_surface() -> None:
    for name in custody.__all__:
        assert hasattr(custody, name), name


def test_read_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cr3t")
    secret.chmod(0o600)
    assert read_secret_file(secret) == b"s3cr3t"
    secret.chmod(0o604)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        read_secret_file(secret)
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_secret_file(tmp_path / "missing")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_secret_file(tmp_path)


def test_key_material_repr_never_shows_the_kek() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    kek = bytes(range(32))
    material = KeyMaterial(
        kek=kek,
        ca_key=key,
        ca_cert=None,  # type: ignore[arg-type]
        device_ca_key=key,
        device_ca_cert=None,  # type: ignore[arg-type]
        backend="file",
    )
    assert kek.hex() not in repr(material)
    assert repr(kek) not in repr(material)
    material.close()  # no token: a no-op


def pkcs11_config(tmp_path: Path, **keys: str) -> HubConfig:
    # Any existing absolute file passes the module check; PIN problems are found before the
    # module is loaded, so no PKCS#11 module is needed here.
    module = tmp_path / "module.so"
    module.write_bytes(b"")
    values = {
        "backend": "pkcs11",
        "pkcs11_module": str(module),
        "pkcs11_token_label": "hub",
    }
    values.update(keys)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name in ("ca.pem", "device-ca.pem", "kek.wrapped"):
        (data / name).write_bytes(b"")
    return HubConfig(data_dir=data, keys=KeysConfig(**values))


def test_open_reads_certificates_before_the_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca\.pem: not a usable CA certificate"):
        open_key_material(pkcs11_config(tmp_path))


@pytest.mark.parametrize(
    ("keys", "env", "message"),
    [
        ({}, {}, "needs the user PIN"),
        ({"pkcs11_pin_env": "IRONHUB_UNIT_PIN"}, {}, "IRONHUB_UNIT_PIN is not set or empty"),
        ({"pkcs11_pin_env": "IRONHUB_UNIT_PIN"}, {"IRONHUB_UNIT_PIN": ""}, "not set or empty"),
        ({"pkcs11_pin_env": "IRONHUB_UNIT_PIN", "pkcs11_pin_file": "/x"}, {}, "set only one"),
        ({"pkcs11_pin_file": "/nonexistent/pin"}, {}, "cannot be read"),
        ({"pkcs11_module": "softhsm.so"}, {}, "absolute path"),
        ({"pkcs11_module": "/nonexistent/softhsm.so"}, {}, "does not exist"),
        ({"pkcs11_token_label": ""}, {}, "pkcs11_token_label is required"),
    ],
)
def test_pin_and_module_sources(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: dict[str, str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.delenv("IRONHUB_UNIT_PIN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        custody._acquire_link(pkcs11_config(tmp_path, **keys).keys)
    assert not custody._LINKS


def test_pin_file_rules(tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_bytes(b"1234\n")
    pin.chmod(0o600)
    assert custody._read_pin(KeysConfig(pkcs11_pin_file=str(pin))) == "1234"
    pin.write_bytes(b"\n")
    with pytest.raises(ConfigError, match="is empty"):
        custody._read_pin(KeysConfig(pkcs11_pin_file=str(pin)))
    pin.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        custody._read_pin(KeysConfig(pkcs11_pin_file=str(pin)))
    pin.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        custody._read_pin(KeysConfig(pkcs11_pin_file=str(pin)))


def test_ec_point_in_both_encodings() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert custody._decode_ec_point(point, "k") == public
    assert custody._decode_ec_point(bytes([0x04, len(point)]) + point, "k") == public
    with pytest.raises(ConfigError, match="unreadable public key"):
        custody._decode_ec_point(b"\x04" + b"\x00" * 64, "k")
