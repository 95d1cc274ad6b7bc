"""Connect-time faults on the wire: the 502 of a failed upstream connection, a refused
CONNECT, and a client's TLS handshake made to fail.

The addon decides connect-time rules at a forward proxy's CONNECT, at a request that makes
its own upstream connection, and (handshake faults) as a reverse-mode client starts TLS;
nothing here opens an upstream connection. :class:`Handshakes` keeps the handshake faults
decided for a client until its handshake: ``alert`` gives mitmproxy a TLS connection with
no certificate, which OpenSSL ends with a fatal ``handshake_failure`` alert (sent to the
client here: mitmproxy drops what a failed handshake leaves to send); ``expired`` and
``self_signed`` give it such a certificate for the host. :class:`HandshakeWire` is the
:class:`~chaosproxy.core.fault.Wire` of a decision made at a handshake, where no flow exists.
"""

from __future__ import annotations

import datetime
import html
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from mitmproxy import http, version
from OpenSSL import SSL, crypto

from chaosproxy.core.engine import Decision, SimpleRequest
from chaosproxy.core.fault import Pacing
from chaosproxy.proxy_addons._internals import clientsock

logger = logging.getLogger("chaosproxy")

#: How long the certificates of ``tls_failure`` are kept per host and mode.
CERTIFICATES_KEPT = 256


def error_page(status: int, message: str, http2: bool) -> http.Response:
    """The answer mitmproxy gives when it cannot reach the upstream (same page, headers)."""
    reason = HTTPStatus(status).phrase
    body = (
        f"<html>\n<head>\n    <title>{status} {reason}</title>\n</head>\n<body>\n"
        f"    <h1>{status} {reason}</h1>\n    <p>{html.escape(message)}</p>\n</body>\n</html>"
    )
    headers = {"Server": version.MITMPROXY, "Content-Type": "text/html"}
    if not http2:
        headers = {"Server": version.MITMPROXY, "Connection": "close", "Content-Type": "text/html"}
    return http.Response.make(status, body.encode(), headers)


def refused_tunnel(address: tuple[str, int], message: str) -> http.Response:
    """mitmproxy's answer to a CONNECT whose upstream it could not reach (eager mode)."""
    return http.Response.make(502, f"Cannot connect to {address[0]}:{address[1]}: {message}")


def tunnel_opened(request: http.Request) -> http.Response:
    """The answer mitmproxy gives a CONNECT it lets through (no headers, as it sends it)."""
    now = time.time()
    return http.Response(
        request.data.http_version,
        200,
        b"Connection established",
        http.Headers(),
        b"",
        None,
        now,
        now,
    )


def handshake_view(
    context: Any, upstream_names: Mapping[str, str]
) -> tuple[SimpleRequest, tuple[str, int]] | None:
    """What a reverse-mode client's TLS handshake is decided on (the name it asks for by
    SNI, else the upstream's host), and the address; None where no handshake rule applies
    (a forward proxy decides at the CONNECT; no upstream address yet)."""
    client, address = context.client, context.server.address
    if address is None or client.proxy_mode.type_name == "regular":
        return None
    host = client.sni or address[0]
    name = upstream_names.get(client.proxy_mode.full_spec)
    view = SimpleRequest(
        "TLS",
        host,
        "",
        upstream=name,
        scheme="https",
        as_requested=f"https://{host}:{address[1]}",
        point="handshake",
    )
    return view, (host, address[1])


class Handshakes:
    """Handshake faults decided for clients, applied when their TLS handshake starts."""

    def __init__(self, handler_of: Callable[[str], Any]) -> None:
        self.handler_of = handler_of
        #: client id -> None (end with an alert) or the certificate to present
        self.pending: dict[str, str | None] = {}
        self._failing: set[str] = set()
        self._certificates: dict[tuple[str, str], tuple[crypto.X509, crypto.PKey]] = {}

    def fail(self, client_id: str, certificate: str | None) -> None:
        self.pending[client_id] = certificate

    def client_left(self, client_id: str) -> None:
        self.pending.pop(client_id, None)
        self._failing.discard(client_id)

    def start_client(self, tls_start: Any, certstore: Any) -> None:
        """The ``tls_start_client`` hook, after mitmproxy's: break this handshake if asked."""
        client = tls_start.context.client
        if client.id not in self.pending:
            return
        certificate = self.pending.pop(client.id)
        if certificate is None:
            failing = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD))  # no certificate
            failing.set_accept_state()
            tls_start.ssl_conn = failing
            self._failing.add(client.id)
            return
        host = client.sni or (tls_start.context.server.address or ("localhost", 0))[0]
        cert, key = self._certificate(str(host), certificate, certstore)
        tls_start.ssl_conn.use_certificate(cert)
        tls_start.ssl_conn.use_privatekey(key)

    def failed_client(self, tls_start: Any) -> None:
        """The ``tls_failed_client`` hook: send the alert OpenSSL wrote for a handshake this
        made fail (mitmproxy closes the connection without sending it)."""
        client = tls_start.context.client
        if client.id not in self._failing:
            return
        self._failing.discard(client.id)
        try:
            alert = tls_start.ssl_conn.bio_read(65536)
        except SSL.Error:
            return
        handler = self.handler_of(client.id)
        if not alert or handler is None or not clientsock.send_to_client(handler, alert):
            logger.debug("tls_failure: the alert could not be sent; the connection closes")

    def _certificate(self, host: str, kind: str, certstore: Any) -> tuple[crypto.X509, crypto.PKey]:
        found = self._certificates.get((host, kind))
        if found is None:
            if len(self._certificates) >= CERTIFICATES_KEPT:
                self._certificates.clear()
            found = self._certificates[(host, kind)] = _make_certificate(host, kind, certstore)
        return found


def _make_certificate(host: str, kind: str, certstore: Any) -> tuple[crypto.X509, crypto.PKey]:
    """A certificate for ``host``: expired (signed by mitmproxy's CA) or self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    issuer, signer = name, key
    if kind == "expired":
        start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        if certstore is not None:
            issuer = certstore.default_ca.to_pyopenssl().to_cryptography().subject
            signer = certstore.default_privatekey
        else:  # mitmproxy's tlsconfig addon changed shape: still expired, but self-signed
            logger.warning(
                "tls_failure expired: mitmproxy's CA is out of reach; %s's "
                "expired certificate is self-signed",
                host,
            )
    else:
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)


class HandshakeWire:
    """The Wire of a decision made as a reverse-mode client starts its TLS handshake: only
    handshake faults act there; anything else closes the connection."""

    def __init__(
        self,
        decision: Decision,
        client_id: str,
        address: tuple[str, int],
        handshakes: Handshakes,
    ) -> None:
        self.decision = decision
        self.rule = decision.name
        self.arrival = time.time()
        self.ended = False
        self.retry_after = decision.retry_after
        self.outcome: str | None = None
        self.added_latency = 0.0
        self._client_id = client_id
        self._address = address
        self._handshakes = handshakes
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = self.decision.rng()
        return self._rng

    @property
    def response(self) -> None:
        return None

    @property
    def upstream(self) -> tuple[str, int]:
        return self._address

    async def run(self) -> None:
        for fault in self.decision.faults:
            await fault.apply(self)

    def fail_handshake(self, certificate: str | None) -> None:
        self.outcome = "tls_failed"
        self._handshakes.fail(self._client_id, certificate)

    # what a handshake cannot do: nothing of it is decided here (see engine.KINDS_AT)
    async def sleep_until(self, when: float) -> bool:
        return True

    async def hold(self) -> None:
        return None

    def respond(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.close()

    def close(self) -> None:
        self.fail_handshake(None)

    def reset(self) -> None:
        self.close()

    def cut(self, keep: float) -> None:
        self.close()

    def pace(self, pacing: Pacing) -> None:
        return None

    def fail_connect(self, error: str) -> None:
        self.close()
