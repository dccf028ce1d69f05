"""A local certificate authority for the sandbox servers (PowerSchool simulator, reference Learning).

The source document requires "a valid SSL installed on your PowerSchool server in order for
the connection ... to work via the API"; the pipeline therefore always verifies certificates.
To make that possible on one machine with no account anywhere, the sandboxes generate a CA
once, keep it under ``.sandbox/tls`` (git-ignored; override with ``SANDBOX_TLS_DIR``) and sign
their server certificates with it. Clients trust the sandboxes by pointing at the CA bundle
(``ca.pem``); nothing ever turns verification off.

Safe when several processes start at once: creation happens under an exclusive file lock
and every file is written to a temporary name and renamed into place, so a reader never sees
a half-written file and two processes never end up with mismatched CA key and certificate.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TLS_DIR = Path(os.environ.get("SANDBOX_TLS_DIR") or REPOSITORY_ROOT / ".sandbox" / "tls")

CA_CERTIFICATE_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
DEFAULT_HOSTNAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

# Long enough that a developer machine never sees the sandbox CA expire; a server
# certificate is re-issued when it is within RENEW_BEFORE of its end.
CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=397)
RENEW_BEFORE = datetime.timedelta(days=7)


@contextmanager
def _exclusive_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _write_atomically(path: Path, content: bytes, mode: int = 0o644) -> None:
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        Path(temporary_name).chmod(mode)
        Path(temporary_name).replace(path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _is_current(certificate: x509.Certificate) -> bool:
    return certificate.not_valid_after_utc - RENEW_BEFORE > _now() >= certificate.not_valid_before_utc


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    certificate_path, key_path = directory / CA_CERTIFICATE_NAME, directory / CA_KEY_NAME
    if not (certificate_path.exists() and key_path.exists()):
        return None
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        return None
    if not _is_current(certificate):
        return None
    return certificate, key


def _create_ca(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sis-learning sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sis-learning sandbox CA {os.getpid()}-{_now():%Y%m%d%H%M%S}"),
        ]
    )
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a reader that finds ca.pem then always finds its matching key (both are
    # written under the lock, and _load_ca checks that they match anyway).
    _write_atomically(directory / CA_KEY_NAME, _private_key_pem(key), mode=0o600)
    _write_atomically(directory / CA_CERTIFICATE_NAME, certificate.public_bytes(serialization.Encoding.PEM))


def ensure_ca(directory: Path = DEFAULT_TLS_DIR) -> Path:
    """Create the sandbox CA in ``directory`` unless a valid one is there; return the CA bundle path."""
    directory = Path(directory)
    if _load_ca(directory) is None:
        with _exclusive_lock(directory):
            if _load_ca(directory) is None:
                _create_ca(directory)
    return directory / CA_CERTIFICATE_NAME


def _subject_alternative_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    return names


def server_certificate(
    directory: Path = DEFAULT_TLS_DIR, hostnames: Sequence[str] = DEFAULT_HOSTNAMES
) -> tuple[Path, Path]:
    """Return (certificate, key) paths of a server certificate signed by the sandbox CA.

    The certificate names every hostname as a subject alternative name; ``localhost`` always
    brings ``127.0.0.1`` and ``::1`` with it, because clients reach a local server by any of
    them. Issued once per set of hostnames and reused until it nears its end or the CA changes.
    """
    if not hostnames:
        raise ValueError("server_certificate needs at least one hostname")
    directory = Path(directory)
    wanted = list(dict.fromkeys([*hostnames, *(DEFAULT_HOSTNAMES if "localhost" in hostnames else ())]))
    ensure_ca(directory)
    label = hashlib.sha256(",".join(sorted(wanted)).encode()).hexdigest()[:12]
    certificate_path = directory / f"server-{label}.pem"
    key_path = directory / f"server-{label}-key.pem"
    with _exclusive_lock(directory):
        loaded = _load_ca(directory)
        if loaded is None:  # removed or expired between ensure_ca and the lock
            _create_ca(directory)
            loaded = _load_ca(directory)
            assert loaded is not None
        ca_certificate, ca_key = loaded
        if certificate_path.exists() and key_path.exists():
            existing = x509.load_pem_x509_certificate(certificate_path.read_bytes())
            if existing.issuer == ca_certificate.subject and _is_current(existing):
                try:
                    ca_certificate.public_key().verify(
                        existing.signature, existing.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
                    )
                    return certificate_path, key_path
                except Exception:  # signed by an older CA of the same name: issue a new one
                    pass
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[0])]))
            .issuer_name(ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(wanted)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_certificate.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_atomically(key_path, _private_key_pem(key), mode=0o600)
        _write_atomically(certificate_path, certificate.public_bytes(serialization.Encoding.PEM))
    return certificate_path, key_path
