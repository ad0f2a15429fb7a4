"""TLS towards https upstreams, as Kong's nginx configures it.

Kong leaves ``proxy_ssl_verify`` off unless a service sets ``tls_verify``:
services with self-signed or internal certificates work out of the box. It
always sends SNI (``proxy_ssl_server_name on``). With ``tls_verify = true``
the certificate is checked against the system's trust store (``SSL_CERT_FILE``
and ``SSL_CERT_DIR`` name another), through at most ``tls_verify_depth``
intermediates when a service sets it (kongish has no
``ca_certificates`` entities).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from OpenSSL.SSL import Connection
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS, platformTrust
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.protocols.tls import TLSMemoryBIOProtocol


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class _Unverified:
    """Client connections that send SNI but accept any certificate."""

    options: CertificateOptions
    server_name: bytes | None

    def clientConnectionForTLS(self, protocol: TLSMemoryBIOProtocol) -> Connection:
        connection = self.options.clientConnectionForTLS(protocol)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        return connection


@implementer(IPolicyForHTTPS)
@attrs.define(eq=False)
class UpstreamTLSPolicy:
    """Agent's ``contextFactory``: verify certificates only when the service asks to."""

    verify: bool
    #: Kong's ``tls_verify_depth``: the most intermediate certificates allowed between the
    #: upstream's and a trusted root (nginx's ``proxy_ssl_verify_depth``); None: OpenSSL's limit.
    depth: int | None = None
    _checked: BrowserLikePolicyForHTTPS = attrs.Factory(BrowserLikePolicyForHTTPS)
    _unchecked: CertificateOptions = attrs.Factory(CertificateOptions)

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        if self.verify and self.depth is None:
            return self._checked.creatorForNetloc(hostname, port)
        if self.verify:
            return optionsForClientTLS(hostname.decode("ascii"), platformTrust(),
                                       extraCertificateOptions={"verifyDepth": self.depth})
        host = hostname.decode("ascii", "replace").strip("[]")
        literal_ip = isIPAddress(host) or isIPv6Address(host)
        return _Unverified(self._unchecked, None if literal_ip else hostname)
