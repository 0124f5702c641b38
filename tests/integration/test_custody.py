"""Key custody against a real SoftHSM2 token (no PKCS#11 mocks) and the file backend.

Issue 5 and SECURITY-TESTS.md §3.7 item 32: the CA keys and the KEK come from 0600 files or a
PKCS#11 token; when the source is unavailable or unreadable the hub is not ready, and no
fallback key is ever made.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from tests.support.dps_client import DpsClient, make_csr
from tests.support.hubkit import HubFactory
from tests.support.mqtt_client import client_tls_context
from tests.support.softhsm import TOKEN_LABEL, SoftHSMToken, init_token, make_token

import ironhub.cli.custody  # noqa: F401 - registers `ironhub keys` (also imported by cli/main.py)
from ironhub import custody, pki
from ironhub.cli.main import cli
from ironhub.config import HubConfig, KeysConfig
from ironhub.custody import (
    CA_KEY_LABEL,
    DEVICE_CA_KEY_LABEL,
    KEK_KEY_LABEL,
    DataFiles,
    TokenSigningKey,
    open_key_material,
    prepare_token,
)
from ironhub.errors import ConfigError, TrustError
from ironhub.registry.sealing import device_key_aad, seal, unseal
from ironhub.server import ensure_trust_material
from ironhub.storage.interfaces import Attestation

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHSMToken]:
    with make_token(tmp_path, monkeypatch) as made:
        yield made


def hsm_config(tmp_path: Path, token: SoftHSMToken, **keys: str) -> HubConfig:
    return HubConfig(data_dir=tmp_path / "data", keys=token.keys_config(**keys))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leaf_from_chain(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


# --- pkcs11 backend: creation and use ------------------------------------------------------------


def test_first_start_creates_keys_in_the_token_and_no_private_key_files(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    assert ensure_trust_material(config) is True
    files = DataFiles(config.data_dir)
    for absent in (files.ca_key, files.device_ca_key, files.kek):
        assert not absent.exists(), absent
    for public in (files.ca_cert, files.device_ca_cert):
        assert public.exists()
    assert mode(files.kek_wrapped) == 0o600
    labels = token.labels()
    for label in (CA_KEY_LABEL, DEVICE_CA_KEY_LABEL):
        assert ("PRIVATE_KEY", label) in labels
        assert ("PUBLIC_KEY", label) in labels
    assert ("SECRET_KEY", KEK_KEY_LABEL) in labels
    # The private objects can neither be read nor exported.
    with token.session() as session:
        for obj in session.get_objects({pkcs11.Attribute.LABEL: CA_KEY_LABEL}):
            if obj[pkcs11.Attribute.CLASS] == pkcs11.ObjectClass.PRIVATE_KEY:
                assert obj[pkcs11.Attribute.SENSITIVE] is True
                assert obj[pkcs11.Attribute.EXTRACTABLE] is False
                assert obj[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
        kek = session.get_key(pkcs11.ObjectClass.SECRET_KEY, label=KEK_KEY_LABEL)
        assert kek[pkcs11.Attribute.SENSITIVE] is True
        assert kek[pkcs11.Attribute.EXTRACTABLE] is False
    # A second start creates nothing.
    assert ensure_trust_material(config) is False
    assert token.labels() == labels


def test_hub_ca_in_the_token_signs_the_server_certificate(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf_from_chain(files.server_cert).verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    with open_key_material(config) as keys:
        assert isinstance(keys.ca_key, TokenSigningKey)
        assert keys.ca_key.public_key() == ca.public_key()
        assert keys.backend == "pkcs11"
    # A new host name re-issues the server certificate through the token.
    before = files.server_cert.read_bytes()
    ensure_trust_material(
        HubConfig(data_dir=config.data_dir, hostnames=("hub.example",), keys=config.keys)
    )
    assert files.server_cert.read_bytes() != before
    leaf_from_chain(files.server_cert).verify_directly_issued_by(ca)


def test_device_ca_in_the_token_issues_device_certificates_and_crls(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    device_key = ec.generate_private_key(ec.SECP256R1())
    with open_key_material(config) as keys:
        assert isinstance(keys.device_ca_key, TokenSigningKey)
        ca = keys.device_ca_cert
        assert ca.subject.rfc4514_string() == "CN=ironhub device CA"
        cert = pki.issue_device_certificate(
            keys.device_ca_key, ca, device_key.public_key(), "dev-1", now=NOW
        )
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(NOW)
            .next_update(NOW + dt.timedelta(hours=24))
            .add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(NOW)
                .build()
            )
            .sign(keys.device_ca_key, hashes.SHA256())
        )
    cert.verify_directly_issued_by(ca)
    assert crl.is_signature_valid(ca.public_key())
    on_disk = x509.load_pem_x509_certificate(DataFiles(config.data_dir).device_ca_cert.read_bytes())
    assert on_disk == ca


def test_the_kek_round_trips_across_restarts(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    aad = device_key_aad("dev-1", "primary")
    with open_key_material(config) as keys:
        assert len(keys.kek) == 32
        sealed = seal(keys.kek, b"device secret", aad=aad)
        first = keys.kek
        assert first.hex() not in repr(keys)
    # Only the wrapped form is on disk.
    assert first not in DataFiles(config.data_dir).kek_wrapped.read_bytes()
    ensure_trust_material(config)  # a restart
    with open_key_material(config) as keys:
        assert keys.kek == first
        assert unseal(keys.kek, sealed, aad=aad) == b"device secret"


def test_keys_made_by_init_token_are_the_ones_the_first_start_certifies(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    assert set(prepare_token(config)) == {CA_KEY_LABEL, DEVICE_CA_KEY_LABEL, KEK_KEY_LABEL}
    assert prepare_token(config) == ()
    labels = token.labels()
    assert not config.data_dir.exists() or not any(config.data_dir.iterdir())
    ensure_trust_material(config)
    assert token.labels() == labels
    with open_key_material(config) as keys:
        assert keys.backend == "pkcs11"


def test_signing_from_many_threads_is_serialised(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    errors: list[BaseException] = []
    with open_key_material(config) as keys:
        public = keys.device_ca_key.public_key()

        def work(n: int) -> None:
            try:
                for i in range(25):
                    data = f"{n}/{i}".encode()
                    signature = keys.device_ca_key.sign(data, ec.ECDSA(hashes.SHA256()))
                    public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_two_holders_share_one_login(
    tmp_path: Path, token: SoftHSMToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    first = open_key_material(config)
    second = open_key_material(config)
    try:
        first.close()
        first.close()  # closing twice is harmless
        # The other holder still signs: closing one did not log the process out.
        second.device_ca_key.sign(b"x", ec.ECDSA(hashes.SHA256()))
        # While this process is logged in, another PIN is still refused.
        wrong = tmp_path / "wrong-pin"
        wrong.write_text("not-the-pin")
        wrong.chmod(0o600)
        with pytest.raises(ConfigError, match="PIN differs"):
            open_key_material(hsm_config(tmp_path, token, pkcs11_pin_file=str(wrong)))
        monkeypatch.setenv("IRONHUB_TEST_PIN", token.pin)
        open_key_material(
            hsm_config(tmp_path, token, pkcs11_pin_file="", pkcs11_pin_env="IRONHUB_TEST_PIN")
        ).close()
    finally:
        second.close()
    assert not custody._LINKS


# --- pkcs11 backend: fails closed ----------------------------------------------------------------


def test_signing_after_close_or_token_failure_fails_closed(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    keys = open_key_material(config)
    signer = keys.ca_key
    try:
        with pytest.raises(TrustError, match="ECDSA-SHA256 only"):
            signer.sign(b"x", ec.ECDSA(hashes.SHA384()))
        with pytest.raises(TrustError, match="cannot be exported"):
            signer.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        with pytest.raises(TrustError, match="cannot be exported"):
            pki.private_key_pem(signer)
        with pytest.raises(TrustError):
            signer.private_numbers()
        with pytest.raises(TrustError):
            signer.exchange(ec.ECDH(), signer.public_key())
        # The token session dies under the hub (device removed, HSM restarted).
        link = next(iter(custody._LINKS.values()))
        link.session.close()
        with pytest.raises(TrustError, match="sign failed"):
            signer.sign(b"x", ec.ECDSA(hashes.SHA256()))
        with pytest.raises(TrustError):
            pki.issue_server_certificate(signer, keys.ca_cert, ["hub.example"], now=NOW)
    finally:
        keys.close()
    with pytest.raises(TrustError, match="closed"):
        signer.sign(b"x", ec.ECDSA(hashes.SHA256()))


def write_pin(path: Path, pin: str, file_mode: int = 0o600) -> Path:
    path.write_text(pin + "\n")
    path.chmod(file_mode)
    return path


def test_a_wrong_pin_is_refused_and_never_shown(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    wrong = write_pin(tmp_path / "wrong", "9999-wrong")
    bad = hsm_config(tmp_path, token, pkcs11_pin_file=str(wrong))
    with pytest.raises(ConfigError, match="PIN was refused") as caught:
        open_key_material(bad)
    assert "9999" not in str(caught.value)
    with pytest.raises(ConfigError, match="PIN was refused"):
        ensure_trust_material(bad)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"pkcs11_pin_file": "", "pkcs11_pin_env": ""}, "needs the user PIN"),
        ({"pkcs11_pin_env": "IRONHUB_TEST_UNSET_PIN", "pkcs11_pin_file": ""}, "not set or empty"),
        ({"pkcs11_pin_env": "IRONHUB_TEST_PIN"}, "set only one"),
        ({"pkcs11_token_label": ""}, "pkcs11_token_label is required"),
        ({"pkcs11_token_label": "no-such-token"}, "no token labelled 'no-such-token'"),
        ({"pkcs11_module": ""}, "pkcs11_module is required"),
        ({"pkcs11_module": "/nonexistent/libsofthsm2.so"}, "does not exist"),
        ({"pkcs11_module": "libsofthsm2.so"}, "must be an absolute path"),
    ],
)
def test_an_unusable_token_configuration_is_refused(
    tmp_path: Path, token: SoftHSMToken, keys: dict[str, str], message: str
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    bad = hsm_config(tmp_path, token, **keys)
    with pytest.raises(ConfigError, match=message):
        open_key_material(bad)
    with pytest.raises(ConfigError, match=message):
        ensure_trust_material(bad)


def test_a_pin_file_readable_by_others_is_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    exposed = write_pin(tmp_path / "exposed", token.pin, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_trust_material(hsm_config(tmp_path, token, pkcs11_pin_file=str(exposed)))


def test_a_module_that_is_not_pkcs11_is_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    fake = tmp_path / "fake.so"
    fake.write_text("not a shared object")
    with pytest.raises(ConfigError, match="cannot be loaded as a PKCS#11 module"):
        ensure_trust_material(hsm_config(tmp_path, token, pkcs11_module=str(fake)))


def test_a_missing_token_makes_the_hub_not_ready(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    # The token's storage is gone (another machine, a wiped HSM).
    for path in sorted((token.conf.parent / "tokens").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(ConfigError, match=f"no token labelled '{TOKEN_LABEL}'"):
        open_key_material(config)
    with pytest.raises(ConfigError):
        ensure_trust_material(config)
    assert not any((token.conf.parent / "tokens").iterdir())


@pytest.mark.parametrize("label", [CA_KEY_LABEL, DEVICE_CA_KEY_LABEL, KEK_KEY_LABEL])
def test_a_key_deleted_from_the_token_is_refused_not_remade(
    tmp_path: Path, token: SoftHSMToken, label: str
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    token.destroy(label)
    with pytest.raises(ConfigError, match=label):
        ensure_trust_material(config)
    with pytest.raises(ConfigError, match=label):
        open_key_material(config)
    with pytest.raises(ConfigError, match=label):
        prepare_token(config)
    assert all(found != label for _, found in token.labels())


def test_another_token_with_its_own_keys_is_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    init_token(token.conf, "other-token")
    other = hsm_config(tmp_path, token, pkcs11_token_label="other-token")
    prepare_token(HubConfig(data_dir=tmp_path / "elsewhere", keys=other.keys))
    with pytest.raises(ConfigError, match="does not belong to the token key"):
        open_key_material(other)


def test_a_tampered_wrapped_kek_is_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    wrapped = DataFiles(config.data_dir).kek_wrapped
    blob = bytearray(wrapped.read_bytes())
    blob[-1] ^= 1
    wrapped.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="cannot be opened with the token key"):
        open_key_material(config)
    wrapped.write_bytes(b"\x01short")
    with pytest.raises(ConfigError, match="not a wrapped key-encryption key"):
        open_key_material(config)


def test_backends_are_not_mixed_in_one_data_directory(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    stray = files.kek
    stray.write_bytes(b"k" * 32)
    stray.chmod(0o600)
    with pytest.raises(ConfigError, match=r"private key files \(kek\.key\)"):
        ensure_trust_material(config)
    with pytest.raises(ConfigError, match=r"kek\.key"):
        open_key_material(config)
    stray.unlink()
    # The same directory with the file backend: refused, not filled with file keys.
    as_file = HubConfig(data_dir=config.data_dir)
    with pytest.raises(ConfigError, match=r'set keys\.backend = "pkcs11"'):
        ensure_trust_material(as_file)
    with pytest.raises(ConfigError, match=r'set keys\.backend = "pkcs11"'):
        open_key_material(as_file)
    assert not files.ca_key.exists()


def test_a_data_directory_from_before_the_device_ca_gets_one_in_the_token(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    files.device_ca_cert.unlink()
    token.destroy(DEVICE_CA_KEY_LABEL)
    assert ensure_trust_material(config) is False
    with open_key_material(config) as keys:
        assert keys.device_ca_key.public_key() == keys.device_ca_cert.public_key()


# --- file backend ---------------------------------------------------------------------------------


def file_config(tmp_path: Path) -> HubConfig:
    return HubConfig(data_dir=tmp_path / "data")


def test_file_backend_creates_the_device_ca(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    assert ensure_trust_material(config) is True
    files = DataFiles(config.data_dir)
    assert mode(files.device_ca_key) == 0o600
    with open_key_material(config) as keys:
        assert keys.backend == "file"
        assert keys.device_ca_cert.subject.rfc4514_string() == "CN=ironhub device CA"
        assert keys.device_ca_key.public_key() == keys.device_ca_cert.public_key()
        days = (
            keys.device_ca_cert.not_valid_after_utc - keys.device_ca_cert.not_valid_before_utc
        ).days
        assert days == config.provisioning.device_ca_validity_days
        assert keys.kek.hex() not in repr(keys)


def test_file_backend_adds_the_device_ca_to_an_older_data_directory(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    files.device_ca_key.unlink()
    files.device_ca_cert.unlink()
    ca_before = files.ca_cert.read_bytes()
    assert ensure_trust_material(config) is False
    assert files.device_ca_key.exists()
    assert files.ca_cert.read_bytes() == ca_before


def test_file_backend_refuses_a_device_ca_certificate_without_its_key(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    files.device_ca_key.unlink()
    with pytest.raises(ConfigError, match="refusing to create a new device CA key"):
        ensure_trust_material(config)
    with pytest.raises(ConfigError, match=r"device-ca\.key"):
        open_key_material(config)
    assert not files.device_ca_key.exists()


def test_file_backend_refuses_a_device_ca_key_without_its_certificate(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    DataFiles(config.data_dir).device_ca_cert.unlink()
    with pytest.raises(ConfigError, match="restore the certificate"):
        ensure_trust_material(config)


def test_file_backend_refuses_a_group_readable_device_ca_key(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    DataFiles(config.data_dir).device_ca_key.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_trust_material(config)
    with pytest.raises(ConfigError, match="chmod 600"):
        open_key_material(config)


def test_file_backend_refuses_an_unreadable_device_ca_key(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    key = DataFiles(config.data_dir).device_ca_key
    key.unlink()
    key.mkdir(mode=0o700)  # unreadable as a file, whoever runs the test (root reads 0000 files)
    with pytest.raises(ConfigError, match="cannot be read"):
        open_key_material(config)
    key.rmdir()
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=r"device-ca\.key: unreadable private key"):
        open_key_material(config)


def test_file_backend_refuses_a_device_ca_key_of_another_ca(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    files.device_ca_key.unlink()
    files.device_ca_key.write_bytes(files.ca_key.read_bytes())
    files.device_ca_key.chmod(0o600)
    with pytest.raises(ConfigError, match="does not belong to"):
        open_key_material(config)


# --- the CLI --------------------------------------------------------------------------------------


def test_keys_status_and_init_token(tmp_path: Path, token: SoftHSMToken) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ironhub.toml").write_text(token.toml())
    runner = CliRunner()
    not_ready = runner.invoke(cli, ["keys", "status", "--data", str(data), "--json"])
    assert not_ready.exit_code == 2, not_ready.output
    report = json.loads(not_ready.output)
    assert report["ready"] is False
    assert report["token_keys"] == {
        CA_KEY_LABEL: False,
        DEVICE_CA_KEY_LABEL: False,
        KEK_KEY_LABEL: False,
    }

    made = runner.invoke(cli, ["keys", "init-token", "--data", str(data), "--json"])
    assert made.exit_code == 0, made.output
    assert set(json.loads(made.output)["created"]) == {
        CA_KEY_LABEL,
        DEVICE_CA_KEY_LABEL,
        KEK_KEY_LABEL,
    }

    ensure_trust_material(HubConfig(data_dir=data, keys=token.keys_config()))
    ready = runner.invoke(cli, ["keys", "status", "--data", str(data), "--json"])
    assert ready.exit_code == 0, ready.output
    report = json.loads(ready.output)
    assert report["ready"] is True
    assert report["backend"] == "pkcs11"
    assert report["files"]["kek.wrapped"] is True
    assert report["files"]["ca.key"] is False
    assert report["device_ca"]["subject"] == "CN=ironhub device CA"
    assert token.pin not in ready.output

    human = runner.invoke(cli, ["keys", "status", "--data", str(data)])
    assert human.exit_code == 0, human.output
    assert "Ready" in human.output
    assert token.pin not in human.output


def test_keys_init_token_refuses_the_file_backend(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["keys", "init-token", "--data", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert 'not "pkcs11"' in result.output


# --- the whole hub ------------------------------------------------------------------------------


def test_init_hub_with_a_token(tmp_path: Path, token: SoftHSMToken) -> None:
    from ironhub.server import init_hub

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ironhub.toml").write_text(token.toml())
    first = init_hub(data, ("hub.example",))
    assert first.created
    second = init_hub(data, ("hub.example",))
    assert not second.created
    files = DataFiles(data)
    for absent in files.private_key_files():
        assert not absent.exists(), absent
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf_from_chain(files.server_cert).verify_directly_issued_by(ca)


def test_the_keys_config_is_loaded_from_the_data_directory(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    from ironhub.config import load_config

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ironhub.toml").write_text(token.toml())
    assert load_config(data).keys == token.keys_config()
    assert KeysConfig().backend == "file"


@pytest.mark.asyncio
async def test_a_hub_runs_on_token_keys(
    tmp_path: Path, token: SoftHSMToken, hub_factory: HubFactory
) -> None:
    data = tmp_path / "hub"
    data.mkdir(mode=0o700)
    (data / "ironhub.toml").write_text(token.toml())
    hub = await hub_factory(data_dir=data)
    keys = hub.services.keys
    assert keys is not None
    assert keys.backend == "pkcs11"
    assert isinstance(keys.device_ca_key, TokenSigningKey)
    for absent in DataFiles(data).private_key_files():
        assert not absent.exists(), absent

    # End to end on the token: a device registers with a CSR over DPS and gets a certificate
    # signed inside the token; its revocation is published in a CRL signed there too.
    provisioning = hub.services.provisioning
    assert provisioning is not None
    created = await provisioning.create_enrollment("hsm-dev", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    host, port = hub.endpoint.address
    client = await DpsClient.connect(
        host,
        port,
        client_tls_context(hub.info.ca_path),
        id_scope=provisioning.id_scope,
        registration_id="hsm-dev",
        key=base64.b64decode(created.primary_key),
    )
    _, csr = make_csr("hsm-dev")
    answer = await client.register(csr=csr)
    await client.close()
    assert answer.body["status"] == "assigned", answer
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(answer.body["registrationState"]["issuedCertificateChain"][0])
    )
    leaf.verify_directly_issued_by(keys.device_ca_cert)
    await provisioning.authority.revoke(pki.certificate_serial_hex(leaf), "keyCompromise")
    _, der = await provisioning.authority.crl()
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(keys.device_ca_cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None


# --- token keys that do not meet the policy ------------------------------------------------------

P384_PARAMS = bytes.fromhex("06052b81040022")


def make_ec_pair(
    session: pkcs11.Session, label: str, *, params: bytes = custody._P256_PARAMS, **private: bool
) -> None:
    template = {
        pkcs11.Attribute.SENSITIVE: True,
        pkcs11.Attribute.EXTRACTABLE: False,
        pkcs11.Attribute.SIGN: True,
    }
    template.update({getattr(pkcs11.Attribute, k.upper()): v for k, v in private.items()})
    session.generate_keypair(
        pkcs11.KeyType.EC,
        label=label,
        store=True,
        public_template={pkcs11.Attribute.EC_PARAMS: params},
        private_template=template,
    )


@pytest.mark.parametrize(
    ("private", "params", "message"),
    [
        ({"extractable": True}, custody._P256_PARAMS, "must be sensitive and non-extractable"),
        ({"sensitive": False}, custody._P256_PARAMS, "must be sensitive and non-extractable"),
        ({"sign": False}, custody._P256_PARAMS, "not allowed to sign"),
        ({}, P384_PARAMS, "not a P-256 key"),
    ],
)
def test_a_ca_key_outside_the_policy_is_refused(
    tmp_path: Path, token: SoftHSMToken, private: dict[str, bool], params: bytes, message: str
) -> None:
    with token.session() as session:
        make_ec_pair(session, CA_KEY_LABEL, params=params, **private)
    config = hsm_config(tmp_path, token)
    with pytest.raises(ConfigError, match=message):
        ensure_trust_material(config)
    assert not DataFiles(config.data_dir).ca_cert.exists()


@pytest.mark.parametrize(
    ("bits", "template", "message"),
    [
        (256, {pkcs11.Attribute.EXTRACTABLE: True}, "must be sensitive and non-extractable"),
        (128, {}, "not an AES-256 key"),
        (256, {pkcs11.Attribute.DECRYPT: False}, "not allowed to encrypt and decrypt"),
    ],
)
def test_a_kek_key_outside_the_policy_is_refused(
    tmp_path: Path,
    token: SoftHSMToken,
    bits: int,
    template: dict[pkcs11.Attribute, bool],
    message: str,
) -> None:
    with token.session() as session:
        session.generate_key(
            pkcs11.KeyType.AES,
            bits,
            label=KEK_KEY_LABEL,
            store=True,
            capabilities=pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT,
            template={pkcs11.Attribute.EXTRACTABLE: False, **template},
        )
    config = hsm_config(tmp_path, token)
    with pytest.raises(ConfigError, match=message):
        ensure_trust_material(config)
    assert not DataFiles(config.data_dir).kek_wrapped.exists()


def test_halves_of_different_key_pairs_are_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    with token.session() as session:
        make_ec_pair(session, CA_KEY_LABEL)
        make_ec_pair(session, "spare")
        # Swap the public halves' labels: ironhub-ca's private key now meets a foreign public key.
        ours = session.get_key(pkcs11.ObjectClass.PUBLIC_KEY, label=CA_KEY_LABEL)
        spare = session.get_key(pkcs11.ObjectClass.PUBLIC_KEY, label="spare")
        ours[pkcs11.Attribute.LABEL] = "old"
        spare[pkcs11.Attribute.LABEL] = CA_KEY_LABEL
    with pytest.raises(ConfigError, match="test signature failed"):
        ensure_trust_material(hsm_config(tmp_path, token))


def test_two_labels_for_one_key_are_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    with token.session() as session:
        make_ec_pair(session, CA_KEY_LABEL)
        make_ec_pair(session, CA_KEY_LABEL)
    with pytest.raises(ConfigError, match="refusing to guess"):
        ensure_trust_material(hsm_config(tmp_path, token))


def test_a_wrapped_value_of_the_wrong_length_is_refused(
    tmp_path: Path, token: SoftHSMToken
) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    wrapped = DataFiles(config.data_dir).kek_wrapped
    with custody._token(config.keys) as link:
        # A 16-byte value wrapped under the right token key, padded to the expected size.
        blob = custody._wrap_kek(link, b"k" * 16)
    wrapped.write_bytes(blob + b"\x00" * (len(wrapped.read_bytes()) - len(blob)))
    with pytest.raises(ConfigError, match="cannot be opened"):
        open_key_material(config)


def test_status_reports_an_unavailable_token(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    wrong = write_pin(tmp_path / "wrong", "0000-wrong")
    status = custody.describe_key_material(hsm_config(tmp_path, token, pkcs11_pin_file=str(wrong)))
    assert status.ready is False
    assert status.token_keys is None
    assert status.problem is not None
    assert "PIN was refused" in status.problem
    assert status.device_ca is not None


def test_two_tokens_of_one_module_at_once(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    init_token(token.conf, "second")
    # The module stays initialised while the first token's session is open.
    with open_key_material(config) as keys:
        second = HubConfig(
            data_dir=tmp_path / "second", keys=token.keys_config(pkcs11_token_label="second")
        )
        assert ensure_trust_material(second) is True
        keys.device_ca_key.sign(b"x", ec.ECDSA(hashes.SHA256()))


# --- small things -------------------------------------------------------------------------------


def test_the_token_signer_behaves_like_a_p256_key(tmp_path: Path, token: SoftHSMToken) -> None:
    import copy

    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    with open_key_material(config) as keys:
        signer = keys.ca_key
        assert isinstance(signer.curve, ec.SECP256R1)
        assert signer.key_size == 256
        assert copy.copy(signer) is signer
        assert copy.deepcopy(signer) is signer
        assert CA_KEY_LABEL in repr(signer)


def test_a_ca_near_its_end_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ironhub.clock import FakeClock

    config = file_config(tmp_path)
    ensure_trust_material(config)
    late = FakeClock(wall=dt.datetime.now(dt.UTC).timestamp() + 3640 * 86400)
    with (
        caplog.at_level("WARNING", logger="ironhub.custody"),
        open_key_material(config, clock=late),
    ):
        pass
    assert "expires soon or has expired" in caplog.text


def test_file_backend_refuses_a_short_kek(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    ensure_trust_material(config)
    kek = DataFiles(config.data_dir).kek
    kek.write_bytes(b"short")
    with pytest.raises(ConfigError, match="not a 32-byte key"):
        open_key_material(config)


def test_a_data_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create key material"):
        ensure_trust_material(HubConfig(data_dir=blocker / "data"))


def test_a_half_made_token_data_directory_is_refused(tmp_path: Path, token: SoftHSMToken) -> None:
    config = hsm_config(tmp_path, token)
    ensure_trust_material(config)
    files = DataFiles(config.data_dir)
    files.kek_wrapped.unlink()
    with pytest.raises(ConfigError, match=r"incomplete data directory, missing kek\.wrapped"):
        ensure_trust_material(config)
    files.ca_cert.unlink()
    files.database.write_bytes(b"")  # a hub that has run holds devices sealed under the KEK
    with pytest.raises(ConfigError, match="refusing to create new keys"):
        ensure_trust_material(config)


def test_keys_status_for_humans_when_not_ready(tmp_path: Path, token: SoftHSMToken) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ironhub.toml").write_text(token.toml())
    runner = CliRunner()
    result = runner.invoke(cli, ["keys", "status", "--data", str(data)])
    assert result.exit_code == 2
    assert "NOT READY" in result.output
    made = runner.invoke(cli, ["keys", "init-token", "--data", str(data)])
    assert made.exit_code == 0, made.output
    assert "created" in made.output
    again = runner.invoke(cli, ["keys", "init-token", "--data", str(data)])
    assert "already present" in again.output
    (data / "ironhub.toml").write_text("[keys]\nbackend = 1\n")
    broken = runner.invoke(cli, ["keys", "status", "--data", str(data)])
    assert broken.exit_code == 2
    assert broken.output.startswith("error:")
