"""Webhook plumbing with no database in it: the Standard Webhooks signature, the address
check that keeps endpoints off the portal's own network, one signed POST, and the retry
schedule. The services (`campaigns.services.webhooks`) decide what to send and record it.

The signature (https://www.standardwebhooks.com, "Signature scheme"): headers `webhook-id`
(the message key), `webhook-timestamp` (Unix seconds) and `webhook-signature`: "v1," +
base64 of HMAC-SHA256, keyed with the base64-decoded secret after "whsec_", over
"{id}.{timestamp}.{body}".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

USER_AGENT = "SegmentPortal-webhooks/1"

MSG_SCHEME = "The address must start with http:// or https://."
MSG_NO_HOST = "The address has no host name."
MSG_CREDENTIALS = "Put no user name or password in the address; use the signing secret."
MSG_UNRESOLVED = 'The host "{host}" cannot be found: {error}'
MSG_PRIVATE = (
    'The host "{host}" is {address}, a {kind} address: webhooks go to hosts on the internet only.'
)
#: The wait after each failed attempt; the last repeats until the message is given up.
RETRY_DELAYS_SECONDS = (5, 30, 120, 600, 1800, 3600, 7200, 14400)


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ("whsec_" + base64); b"" if invalid."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a body: "v1," + base64 HMAC-SHA256."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(signing_key(secret), message_id, timestamp, body),
    }


def retry_delay(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failed attempt (1-based): 5 s, 30 s, 2 min, 10 min,
    30 min, 1 h, 2 h, then every 4 h until `WEBHOOK_RETRY_HOURS` after the message."""
    index = min(max(attempts, 1), len(RETRY_DELAYS_SECONDS)) - 1
    return dt.timedelta(seconds=RETRY_DELAYS_SECONDS[index])


# --- where requests may go ----------------------------------------------------------------


class AddressRefused(ValueError):
    """The URL may not be used: its message says why, for the person who typed it."""


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the address is off limits (server-side request forgery), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
        ("shared (carrier-grade NAT)", address in ipaddress.ip_network("100.64.0.0/10")),
    ):
        if flag:
            return kind
    return None


def resolve(url: str, *, allow_private: bool | None = None) -> tuple[str, int, str]:
    """Check `url` and resolve its host: (host, port, address to connect to). Raises
    AddressRefused when the scheme is not http(s), the host cannot be found, or (unless
    allowed: `WEBHOOK_ALLOW_PRIVATE_HOSTS`) any of its addresses is loopback, private,
    link-local or otherwise not on the internet. The request then goes to the address
    checked here, so a second lookup cannot point it elsewhere (DNS rebinding)."""
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE_HOSTS
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AddressRefused(MSG_SCHEME)
    if parts.username or parts.password:
        raise AddressRefused(MSG_CREDENTIALS)
    host = parts.hostname
    if not host:
        raise AddressRefused(MSG_NO_HOST)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise AddressRefused(str(error)) from error
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise AddressRefused(MSG_UNRESOLVED.format(host=host, error=error)) from error
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private:
        for text in addresses:
            kind = _kind(ipaddress.ip_address(text.split("%", 1)[0]))
            if kind:
                raise AddressRefused(MSG_PRIVATE.format(host=host, address=text, kind=kind))
    return host, port, addresses[0]


def check_url(url: str) -> None:
    """Raise AddressRefused when webhooks may not go to `url`."""
    resolve(url)


# --- one request --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """How one attempt went: `status` None when no answer came (`error` says why)."""

    status: int | None
    duration_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        # The certificate is checked against the host name, not the address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float | None = None,
) -> Answer:
    """POST `body` to `url` (checked and resolved first), following no redirect. Never
    raises for the network: a refused address, a timeout or a reset is an Answer with no
    status and the reason."""
    timeout = settings.WEBHOOK_TIMEOUT if timeout is None else timeout
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        host, port, address = resolve(url)
    except AddressRefused as error:
        return Answer(None, took(), str(error))
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(2048).decode("utf-8", "replace").strip()
        status = response.status
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, took(), f"{type(error).__name__}: {error}"[:300])
    finally:
        connection.close()
    failure = "" if 200 <= status < 300 else f"Answered {status}" + (f": {text}" if text else "")
    return Answer(status, took(), failure[:300])
