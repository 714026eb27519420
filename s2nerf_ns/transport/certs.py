"""TLS material for the two processes: ``s2nerf-server-cert`` makes a self-signed certificate and key for a lab,
and the checks that ``s2nerf-server`` (its pair) and the client (its CA file) run at startup.

A self-signed certificate is its own CA: the server gets ``server.crt`` + ``server.key``, the client gets a copy
of ``server.crt`` (``--pipeline.model.remote.tls-ca``). The key never leaves the server machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

import tyro

from s2nerf_ns.errors import InputError


def _read(flag: str, path: Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{flag} {path}: cannot read it ({err.strerror})") from None
    if not data.strip():
        raise InputError(f"{flag} {path}: the file is empty")
    return data


def _certificates(flag: str, path: Path, data: bytes) -> list:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(f"{flag} {path}: not a PEM certificate") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InputError(f"{flag} {path}: the certificate is not valid now (valid "
                             f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    return certs


def check_ca(flag: str, path: Path) -> bytes:
    """The client's CA file: readable, PEM certificates valid now. Returns its bytes."""
    data = _read(flag, path)
    _certificates(flag, path, data)
    return data


def check_server_pair(cert_path: Path, key_path: Path) -> Tuple[bytes, bytes]:
    """The server's certificate and key: PEM, valid now, and the key is the certificate's. Returns their bytes."""
    from cryptography.hazmat.primitives import serialization

    cert_data, key_data = _read("--tls-cert", cert_path), _read("--tls-key", key_path)
    leaf = _certificates("--tls-cert", cert_path, cert_data)[0]
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as err:
        raise InputError(f"--tls-key {key_path}: not an unencrypted PEM private key ({err})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.PEM, public)
            != leaf.public_key().public_bytes(serialization.Encoding.PEM, public)):
        raise InputError(f"--tls-key {key_path}: not the key of --tls-cert {cert_path}")
    return cert_data, key_data


def make_self_signed(hosts: List[str], days: int = 365) -> Tuple[bytes, bytes]:
    """A self-signed certificate (its own CA) for ``hosts`` (names or IP addresses) and its key, PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s2nerf-server (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass
class CertConfig:
    """Make a self-signed TLS certificate and key for s2nerf-server (a lab's own CA of one): server.crt and
    server.key for the server, server.crt for the client's --pipeline.model.remote.tls-ca."""

    host: List[str] = field(default_factory=lambda: ["localhost"])
    """Names or IP addresses the client will connect to (each goes into the certificate; 127.0.0.1 is added)."""
    out_dir: Path = Path("certs")
    """Folder to write server.crt and server.key (the key readable by its owner only)."""
    days: int = 365
    """Validity in days."""
    overwrite: bool = False
    """Replace server.crt / server.key if they exist."""

    def __post_init__(self) -> None:
        if self.days < 1:
            raise InputError(f"--days {self.days}: give at least 1")
        if not self.host or not all(h.strip() for h in self.host):
            raise InputError("--host: give at least one host name or address")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"--out-dir {self.out_dir}: exists and is not a folder")
        existing = [p for p in (self.out_dir / "server.crt", self.out_dir / "server.key") if p.exists()]
        if existing and not self.overwrite:
            raise InputError(f"--out-dir {self.out_dir}: {existing[0].name} exists; pass --overwrite to replace it")

    def main(self) -> Tuple[Path, Path]:
        hosts = list(dict.fromkeys([*self.host, "127.0.0.1"]))
        cert, key = make_self_signed(hosts, self.days)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = self.out_dir / "server.crt", self.out_dir / "server.key"
        cert_path.write_bytes(cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        os.chmod(key_path, 0o600)
        print(f"s2nerf-server-cert: wrote {cert_path} and {key_path} for {', '.join(hosts)} ({self.days} days).\n"
              f"  server: s2nerf-server --tls-cert {cert_path} --tls-key {key_path} ...\n"
              f"  client: copy {cert_path} and pass --pipeline.model.remote.tls-ca server.crt")
        return cert_path, key_path


def main() -> None:
    from s2nerf_ns.errors import install as install_error_printers

    install_error_printers()  # one-line errors: installed by the command, not by importing the package
    import sys

    sys.argv[0] = "s2nerf-server-cert"
    tyro.cli(CertConfig).main()


if __name__ == "__main__":
    main()
