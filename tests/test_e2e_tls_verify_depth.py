"""A service's ``tls_verify_depth`` bounds the certificate chain kongish accepts from an https
upstream (nginx's ``proxy_ssl_verify_depth``), through a real ``twist kongish`` that trusts a
test CA (``SSL_CERT_FILE``), against an upstream serving leaf <- intermediate <- that CA."""
from __future__ import annotations

import datetime
import os

import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.web.server import Site

from tests.harness import POOL, EchoUpstream, deferred
from tests.test_e2e_hostile_lua import _Gateway


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 signer: ec.EllipticCurvePrivateKey, authority: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True))
    if not authority:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


def chain(directory: str) -> tuple[CertificateOptions, str]:
    """Server options for localhost (leaf and intermediate), and the path of the root CA's PEM."""
    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kongish test root")])
    root = _certificate("kongish test root", root_key, root_name, root_key, authority=True)
    middle = _certificate("kongish test intermediate", middle_key, root.subject, root_key, authority=True)
    leaf = _certificate("localhost", leaf_key, middle.subject, middle_key, authority=False)
    path = os.path.join(directory, "root.pem")
    with open(path, "wb") as pem:
        pem.write(root.public_bytes(serialization.Encoding.PEM))
    options = CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(leaf_key),
                                 certificate=crypto.X509.from_cryptography(leaf),
                                 extraCertChain=[crypto.X509.from_cryptography(middle)])
    return options, path


class VerifyDepthTests(_Gateway):
    @deferred
    async def test_the_chain_is_checked_as_deep_as_the_service_allows(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        options, root = chain(directory)
        endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        port = await endpoint.listen(Site(EchoUpstream()))
        self.addCleanup(port.stopListening)
        await self._launch({"SSL_CERT_FILE": root})
        url = f"https://localhost:{port.getHost().port}"
        base = f"http://127.0.0.1:{self.admin}"
        for name, depth in (("unbounded", None), ("deep-enough", 1), ("too-shallow", 0)):
            service = {"name": name, "url": url, "tls_verify": True, "retries": 0}
            if depth is not None:
                service["tls_verify_depth"] = depth
            for path, body in (("/services", service), (f"/services/{name}/routes", {"paths": [f"/{name}"]})):
                response = await treq.post((base + path).encode(), json=body, pool=POOL)
                self.assertEqual(response.code, 201, await response.text())
        names = ("unbounded", "deep-enough", "too-shallow")
        answers = {name: (await self._get(f"/{name}"))[0] for name in names}
        self.assertEqual(answers, {"unbounded": 200, "deep-enough": 200, "too-shallow": 502})
