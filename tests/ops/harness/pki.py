"""A throwaway certificate authority and server certificates, made with the openssl CLI.

    ca = make_ca(tmp_path / "ca")
    cert = issue_server_cert(ca, tmp_path / "cert", "detector.test")
    # cert.fullchain / cert.privkey for nginx, ca.cert for the client's `verify=`

File names follow certbot's live/ directory (cert.pem, chain.pem, fullchain.pem, privkey.pem).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .procs import require_tool, run


@dataclass(frozen=True)
class CertificateAuthority:
    cert: Path
    key: Path
    directory: Path


@dataclass(frozen=True)
class ServerCertificate:
    cert: Path        # the leaf alone
    chain: Path       # the issuing CA
    fullchain: Path   # leaf + CA, what nginx's ssl_certificate takes
    privkey: Path
    names: tuple[str, ...]


def _key_args(key_type: str) -> list[str]:
    if key_type == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    if key_type == "rsa":
        return ["-newkey", "rsa:2048"]
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def make_ca(directory: Path, common_name: str = "detector-stack test CA", *,
            days: int = 7, key_type: str = "ec") -> CertificateAuthority:
    openssl = require_tool("openssl")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    run([openssl, "req", "-x509", *_key_args(key_type), "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", str(days), "-subj", f"/CN={common_name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return CertificateAuthority(cert=cert, key=key, directory=directory)


def issue_server_cert(ca: CertificateAuthority, directory: Path, names: str | Sequence[str], *,
                      days: int = 7, key_type: str = "ec") -> ServerCertificate:
    """A server certificate for `names` (DNS names or IP addresses) signed by `ca`."""
    openssl = require_tool("openssl")
    names = (names,) if isinstance(names, str) else tuple(names)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    privkey, csr = directory / "privkey.pem", directory / "request.csr"
    cert, chain, fullchain = directory / "cert.pem", directory / "chain.pem", directory / "fullchain.pem"
    san = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in names)
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run([openssl, "req", "-new", *_key_args(key_type), "-nodes", "-keyout", str(privkey),
         "-out", str(csr), "-subj", f"/CN={names[0]}"])
    run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-CAcreateserial", "-out", str(cert), "-days", str(days), "-extfile", str(extensions)])
    chain.write_bytes(ca.cert.read_bytes())
    fullchain.write_bytes(cert.read_bytes() + ca.cert.read_bytes())
    return ServerCertificate(cert=cert, chain=chain, fullchain=fullchain, privkey=privkey,
                             names=names)


def _is_ip(name: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
