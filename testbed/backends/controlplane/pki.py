"""The control plane's own certificates: one CA, the API server's serving certificate (loopback and the
in-cluster names), client certificates per component, the service-account signing key, and the
operators' webhook serving certificate (SAN 127.0.0.1), all written once under the state directory.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
"""The `kubernetes` Service's cluster IP: the first address of SERVICE_CIDR."""

CLIENTS = {
    # name: (CN, O). system:masters for the testbed's own client and kwok (it writes every node's and
    # pod's status); the others use the identities Kubernetes' default RBAC binds.
    "admin": ("testbed-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kwok": ("kwok-controller", "system:masters"),
}


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def ca_bundle(self) -> bytes:
        return self.ca_cert.read_bytes()


def ensure(directory: Path) -> Pki:
    """Create the CA and every certificate once; later calls reuse them (a restarted control plane
    keeps its identity, so kubeconfigs and webhook CA bundles stay valid)."""
    pki = Pki(Path(directory))
    pki.dir.mkdir(parents=True, exist_ok=True)
    pki.dir.chmod(0o700)
    if pki.ca_cert.is_file() and pki.cert("webhook").is_file():
        return pki
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ml-deployment-testbed control plane CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=VALID_DAYS * 2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    _write(pki.ca_key, ca_key, pki.ca_cert, ca)
    serving = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local", API_SERVICE_IP]
    _issue(pki, "apiserver", "kube-apiserver", None, serving, server=True, ca=ca, ca_key=ca_key)
    _issue(pki, "webhook", "testbed-operator-webhooks", None, ["127.0.0.1", "localhost"], server=True, ca=ca,
           ca_key=ca_key)
    for name, (cn, org) in CLIENTS.items():
        _issue(pki, name, cn, org, [], server=False, ca=ca, ca_key=ca_key)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.sa_key.write_bytes(sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    pki.sa_key.chmod(0o600)
    pki.sa_pub.write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _issue(pki: Pki, name: str, cn: str, org: str | None, sans: list[str], *, server: bool, ca, ca_key) -> None:
    key = _key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        alt = []
        for san in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                alt.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    _write(pki.key(name), key, pki.cert(name), builder.sign(ca_key, hashes.SHA256()))


def _write(key_path: Path, key, cert_path: Path, cert) -> None:
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def kubeconfig(pki: Pki, server: str, user: str, token: str | None = None) -> str:
    """A kubeconfig for `user` (a CLIENTS name: client certificate; or a bearer token)."""
    import yaml

    creds = {"token": token} if token else {"client-certificate": str(pki.cert(user)),
                                            "client-key": str(pki.key(user))}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "testbed-controlplane",
        "clusters": [{"name": "testbed-controlplane",
                      "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "testbed-controlplane", "context": {"cluster": "testbed-controlplane", "user": user}}],
    }, sort_keys=False)
