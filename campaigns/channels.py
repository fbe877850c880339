"""Where a campaign's messages go: one backend per channel (email, SMS, push), chosen in
`settings.CAMPAIGN_CHANNELS` (docs/campaign-channels.md).

The sender opens a backend once per batch and sends each delivery through it::

    with backend_for("email") as backend:   # opens the connection; closes it at exit
        backend.send(message)                # raises ChannelError on failure

A message's `key` is its idempotency key: the same delivery always has the same key, and
every backend passes it on (the email's Message-ID, the HTTP `webhook-id` and
`Idempotency-Key` headers, the file's name), so a repeat after a crash or a retry can be
recognised and dropped by whoever receives it.

Built in: `EmailBackend` (Django's email framework, SMTP in production), `HttpBackend` (a
signed JSON POST, for an SMS or push gateway), `FileBackend` (one JSON file per message: the
demo default) and `ConsoleBackend` (standard output). A provider of its own is a subclass
of `ChannelBackend` named in the setting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import smtplib
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from http.client import HTTPException
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.utils.module_loading import import_string

from campaigns.models import Channel
from campaigns.webhooks import signature, signing_key

NO_CHANNEL = (
    'No backend for the channel "{channel}": settings.CAMPAIGN_CHANNELS configures {known}.'
)
NO_BACKEND = (
    'The channel "{channel}" has no BACKEND in settings.CAMPAIGN_CHANNELS '
    "(CAMPAIGN_{env}_BACKEND chooses it)."
)
BAD_BACKEND = 'The backend of the channel "{channel}" ({path}) {problem}.'
NO_OPTION = (
    'The channel "{channel}" sends by {kind} but has no {option}: set {env} '
    '(settings.CAMPAIGN_CHANNELS["{channel}"]["OPTIONS"]["{option}"]).'
)
BAD_SIGNING_KEY = (
    'The channel "{channel}" has a SECRET that is not "whsec_" followed by base64: check {env}.'
)
BAD_URL = 'The channel "{channel}" has a URL that is not http:// or https://: check {env}.'

#: Keys and merchant slugs become file names and header values: letters, digits, "-", "_"
#: and "." (not first), so neither can climb out of a directory or break a header.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one customer, as the sender hands it to a backend."""

    #: Stable per delivery, e.g. "c12-d3456" (campaign 12, delivery 3456); a test send uses
    #: "test-<uuid hex>". The idempotency key: the email's Message-ID `<{key}@{domain}>`,
    #: the HTTP `webhook-id` and `Idempotency-Key` headers, the file's name.
    key: str
    #: "email", "sms" or "push".
    channel: str
    #: The merchant's slug.
    merchant: str
    #: None for a test send.
    campaign_id: int | None
    #: The customer's external id ("" for a test send).
    customer: str
    #: The email address (email), phone number (sms) or the customer's external id (push).
    to: str
    #: The email's subject, the push notification's title; "" for SMS.
    subject: str
    #: Plain text.
    body: str

    def __post_init__(self) -> None:
        for field in ("key", "merchant"):
            if not SAFE_NAME.fullmatch(getattr(self, field)):
                raise ValueError(
                    f"Unsafe {field} for an outgoing message: {getattr(self, field)!r}"
                )

    def payload(self) -> dict[str, Any]:
        """The message as JSON: what `HttpBackend` posts and `FileBackend` writes."""
        return {
            "id": self.key,
            "channel": self.channel,
            "merchant": self.merchant,
            "campaign": self.campaign_id,
            "customer": self.customer,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
        }


class ChannelError(Exception):
    """A message that was not sent. `retryable`: the same message may succeed later (the
    server was down, busy or timed out), so the sender should try again after a while;
    otherwise it never will (an address refused, a request rejected, a misconfiguration
    that needs an operator), and the delivery has failed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelBackend:
    """The extension point: how one channel's messages leave the portal.

    A subclass implements `send()`; `open()` and `close()` are optional (a connection held
    for a batch). The sender uses an instance from one thread, as a context manager, for a
    batch of messages; `backend_for()` builds it with the channel and the `OPTIONS` of
    `settings.CAMPAIGN_CHANNELS` as keyword arguments. A missing or invalid option raises
    `ChannelError(..., retryable=False)` from `__init__`, saying which setting to fix.
    """

    def __init__(self, channel: str, **options: Any) -> None:
        self.channel = channel
        self.options = options

    def open(self) -> None:
        """Prepare for a batch (connect, log in). May raise ChannelError: when it does, the
        batch should not start."""

    def close(self) -> None:
        """End the batch: release what `open()` took. Never raises."""

    def send(self, message: OutgoingMessage) -> None:
        """Send one message, or raise ChannelError saying whether a retry may succeed.

        Pass `message.key` on to the provider as its idempotency key (or dedupe on it): the
        sender may send a message again after a crash between sending and recording it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement send()")

    def deliver(self, message: OutgoingMessage, commit: Callable[[], None]) -> None:
        """Send one message and call `commit()` (the sender records it as sent) exactly once,
        as soon as the provider has it; raise ChannelError otherwise.

        The default sends, then commits: a worker killed between the provider's answer and
        the commit leaves the message unrecorded, and it is sent again with the same key. A
        backend that can tell when the last byte of a message is handed over overrides this
        to commit right then, before waiting for the provider's answer (SMTP: after writing
        the final "." of DATA), which narrows that window to the instant between two writes.
        An error raised after `commit()` (the provider refused the message after all) tells
        the sender to change the record back."""
        self.send(message)
        commit()

    def describe(self) -> str:
        """What the channel is set up to do, in a few words, for the portal's campaign page
        (no secrets)."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def backend_for(channel: str) -> ChannelBackend:
    """A new, unopened backend for the channel, as `settings.CAMPAIGN_CHANNELS` configures
    it. An unknown channel or a backend that cannot be built raises
    `ChannelError(..., retryable=False)` naming the setting to fix."""
    channels: dict[str, dict[str, Any]] = getattr(settings, "CAMPAIGN_CHANNELS", {})
    config = channels.get(channel)
    if config is None:
        known = ", ".join(sorted(channels)) or "no channel"
        raise ChannelError(NO_CHANNEL.format(channel=channel, known=known), retryable=False)
    path = config.get("BACKEND")
    if not path:
        raise ChannelError(NO_BACKEND.format(channel=channel, env=channel.upper()), retryable=False)
    try:
        backend_class = import_string(path)
    except ImportError as error:
        raise ChannelError(
            BAD_BACKEND.format(channel=channel, path=path, problem=f"cannot be imported: {error}"),
            retryable=False,
        ) from error
    if not (isinstance(backend_class, type) and issubclass(backend_class, ChannelBackend)):
        raise ChannelError(
            BAD_BACKEND.format(channel=channel, path=path, problem="is not a ChannelBackend"),
            retryable=False,
        )
    backend: ChannelBackend = backend_class(channel, **config.get("OPTIONS", {}))
    return backend


def channel_status() -> dict[str, str]:
    """Per channel, what it is configured to do (or why it cannot send), in a few words."""
    status = {}
    for channel in Channel.values:
        try:
            status[channel] = backend_for(channel).describe()
        except ChannelError as error:
            status[channel] = f"not configured: {error}"
    return status


# --- email --------------------------------------------------------------------------------


class EmailBackend(ChannelBackend):
    """Email through Django's email framework: SMTP in production (the EMAIL_* settings),
    or whichever Django email backend `OPTIONS["EMAIL_BACKEND"]` names (default
    `settings.EMAIL_BACKEND`). One connection per batch, reopened on the next message after
    a connection error.

    From `settings.CAMPAIGN_FROM_EMAIL` (or DEFAULT_FROM_EMAIL); the Message-ID is
    `<{key}@{domain of the from address}>`, and `X-Campaign-Id` names the campaign.

    Errors: an invalid address, or a recipient, sender or message the server refuses with
    a 5xx code, is permanent; a 4xx code, a timeout or a lost connection is retryable. A
    connection that cannot be opened (`open()`) is retryable whatever the code (a wrong
    password or a server down is the operator's to fix; the messages are not at fault).
    """

    def __init__(self, channel: str, **options: Any) -> None:
        super().__init__(channel, **options)
        self.email_backend: str = options.get("EMAIL_BACKEND") or settings.EMAIL_BACKEND
        self.from_email: str = (
            options.get("FROM_EMAIL")
            or getattr(settings, "CAMPAIGN_FROM_EMAIL", "")
            or settings.DEFAULT_FROM_EMAIL
        )
        self.domain = parseaddr(self.from_email)[1].rpartition("@")[2] or "localhost"
        self.connection: BaseEmailBackend | None = None

    def open(self) -> None:
        if self.connection is not None:
            return
        connection = get_connection(backend=self.email_backend, fail_silently=False)
        try:
            connection.open()
        except OSError as error:  # smtplib's errors are OSErrors too
            with contextlib.suppress(OSError):
                connection.close()
            raise ChannelError(
                f"Cannot connect to the email server: {_smtp_text(error)}", retryable=True
            ) from error
        self.connection = connection

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            # Closing a connection the server already dropped may fail; it is gone either way.
            with contextlib.suppress(OSError):
                connection.close()

    def send(self, message: OutgoingMessage) -> None:
        email = self.email_message(message)
        self.open()
        assert self.connection is not None
        try:
            sent = self.connection.send_messages([email])
        except ValueError as error:  # an address or header Django refuses to write
            raise ChannelError(str(error), retryable=False) from error
        except OSError as error:
            channel_error = _smtp_error(error)
            if channel_error.retryable:
                self.close()  # the next message opens a fresh connection
            raise channel_error from error
        if not sent:
            raise ChannelError("The email backend sent nothing.", retryable=True)

    def deliver(self, message: OutgoingMessage, commit: Callable[[], None]) -> None:
        """Over SMTP, the message is recorded right after the final "." of DATA is written,
        before the server's answer: a worker killed before the dot leaves no message (the
        server discards an unfinished one), one killed after the record leaves a recorded one,
        and only a kill in the instant between the two writes sends the message again (with
        the same Message-ID). Recording before the dot instead would lose the message on a
        kill between the record and the dot, a window as wide as the process's wait for the
        database's answer. Other Django email backends (files, console, the tests' memory)
        send, then commit."""
        email = self.email_message(message)
        self.open()
        smtp = getattr(self.connection, "connection", None)
        if not isinstance(smtp, smtplib.SMTP):
            self.send(message)
            commit()
            return
        _no_delay(smtp)
        try:
            _smtp_data_without_end(smtp, email)
            smtp.send(b".\r\n")
            try:
                commit()
            except BaseException:
                self.close()  # the server's answer is left unread: a fresh connection next
                raise
            code, reply = smtp.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except ValueError as error:  # an address or header Django refuses to write
            _smtp_reset(smtp)
            raise ChannelError(str(error), retryable=False) from error
        except OSError as error:
            channel_error = _smtp_error(error)
            if channel_error.retryable:
                self.close()  # the next message opens a fresh connection
            else:
                _smtp_reset(smtp)
            raise channel_error from error

    def email_message(self, message: OutgoingMessage) -> EmailMessage:
        """The email of a message (overridable: HTML alternatives, more headers)."""
        try:
            validate_email(message.to)
        except ValidationError as error:
            raise ChannelError(
                f"Not a valid email address: {message.to!r}", retryable=False
            ) from error
        headers = {"Message-ID": f"<{message.key}@{self.domain}>"}
        if message.campaign_id is not None:
            headers["X-Campaign-Id"] = str(message.campaign_id)
        return EmailMessage(
            subject=message.subject,
            body=message.body,
            from_email=self.from_email,
            to=[message.to],
            headers=headers,
        )

    def describe(self) -> str:
        try:
            backend_class = import_string(self.email_backend)
        except ImportError:
            return f"not configured: the email backend {self.email_backend} cannot be imported"
        if isinstance(backend_class, type) and issubclass(backend_class, SmtpEmailBackend):
            security = (
                " (SSL)"
                if settings.EMAIL_USE_SSL
                else " (STARTTLS)"
                if settings.EMAIL_USE_TLS
                else " (no TLS)"
            )
            where = f"SMTP via {settings.EMAIL_HOST}:{settings.EMAIL_PORT}{security}"
        else:
            where = f"Django email backend {self.email_backend}"
        return f"{where}, from {self.from_email}"


def _smtp_data_without_end(smtp: smtplib.SMTP, email: EmailMessage) -> None:
    """`smtplib.SMTP.sendmail()` up to, not including, the "." that ends the message: MAIL,
    RCPT, DATA and the message's lines (dots doubled, as sendmail does)."""
    encoding = email.encoding or settings.DEFAULT_CHARSET
    sender = sanitize_address(email.from_email, encoding)
    recipients = [sanitize_address(address, encoding) for address in email.recipients()]
    content = email.message().as_bytes(linesep="\r\n")
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if len(refused) == len(recipients):
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = smtp.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    quoted = re.sub(rb"(?m)^\.", b"..", content)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    smtp.send(quoted)


def _no_delay(smtp: smtplib.SMTP) -> None:
    # TRICKY: the final "." goes out alone, after the message; with Nagle's algorithm the
    # kernel holds that small write until the server acknowledges the message, which a
    # delayed ACK puts off by up to 40 ms: 25 messages a second per connection.
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _smtp_reset(smtp: smtplib.SMTP) -> None:
    # A refused message leaves the SMTP transaction open: RSET makes the connection usable
    # for the next one (when it fails, the connection is dropped on the next error).
    with contextlib.suppress(OSError):
        smtp.rset()


def _smtp_text(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{error.smtp_code} {text}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _smtp_error(error: OSError) -> ChannelError:
    """The ChannelError of an error while sending: permanent for 5xx answers only."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        refusals = "; ".join(
            f"{address}: {code} {text.decode('utf-8', 'replace')}"
            for address, (code, text) in error.recipients.items()
        )
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return ChannelError(f"Recipient refused: {refusals}", retryable=not permanent)
    if isinstance(error, smtplib.SMTPResponseException):
        # Sender refused, message refused (DATA), service closing (421), ...
        return ChannelError(
            f"The email server answered {_smtp_text(error)}",
            retryable=not 500 <= error.smtp_code < 600,
        )
    # Disconnected, timed out, connection refused or reset, TLS failure.
    return ChannelError(f"Email connection failed: {_smtp_text(error)}", retryable=True)


# --- HTTP ---------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302/303 with a GET and no body, and report success; a
    # redirect is answered as an error instead (set the final URL).
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpBackend(ChannelBackend):
    """A JSON POST per message to `OPTIONS["URL"]` (an SMS or push gateway), signed the
    Standard Webhooks way with `OPTIONS["SECRET"]` ("whsec_" + base64).

    Body: `OutgoingMessage.payload()`. Headers: `webhook-id` (the key), `webhook-timestamp`
    (Unix seconds), `webhook-signature` ("v1," + base64 of HMAC-SHA256 over
    "{id}.{timestamp}.{body}"), and `Idempotency-Key` (the key). `OPTIONS["TIMEOUT"]`:
    seconds (default 10).

    A 2xx answer is success; 408, 429, 5xx, a timeout or no connection are retryable; any
    other answer (other 4xx, a redirect) is permanent, with the status and the start of the
    response in the message.
    """

    user_agent = "SegmentPortal-campaigns/1"

    def __init__(self, channel: str, **options: Any) -> None:
        super().__init__(channel, **options)
        env = f"CAMPAIGN_{channel.upper()}"
        url = options.get("URL") or ""
        secret = options.get("SECRET") or ""
        for option, value in (("URL", url), ("SECRET", secret)):
            if not value:
                raise ChannelError(
                    NO_OPTION.format(
                        channel=channel, kind="HTTP", option=option, env=f"{env}_{option}"
                    ),
                    retryable=False,
                )
        if urlsplit(url).scheme not in ("http", "https"):
            raise ChannelError(BAD_URL.format(channel=channel, env=f"{env}_URL"), retryable=False)
        self.url: str = url
        self.signing_key = signing_key(secret)
        if not self.signing_key:
            raise ChannelError(
                BAD_SIGNING_KEY.format(channel=channel, env=f"{env}_SECRET"), retryable=False
            )
        self.timeout = float(options.get("TIMEOUT", 10))
        self.clock: Callable[[], float] = time.time
        self.opener = urllib.request.build_opener(_NoRedirect)

    def sign(self, key: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header of a body."""
        return signature(self.signing_key, key, timestamp, body)

    def send(self, message: OutgoingMessage) -> None:
        body = json.dumps(message.payload(), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(self.clock())
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                "webhook-id": message.key,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": self.sign(message.key, timestamp, body),
                "Idempotency-Key": message.key,
            },
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:  # an answer other than 2xx
            text = ""
            with contextlib.suppress(OSError, HTTPException):
                text = error.read(1024).decode("utf-8", "replace").strip()[:200]
            error.close()
            status = error.code
            raise ChannelError(
                f"The {self.channel} gateway answered {status}" + (f": {text}" if text else ""),
                retryable=status in (408, 429) or status >= 500,
            ) from error
        except urllib.error.URLError as error:
            raise ChannelError(
                f"The {self.channel} gateway is unreachable: {error.reason}", retryable=True
            ) from error
        except (OSError, HTTPException) as error:  # timed out, reset, a broken answer
            raise ChannelError(
                f"The {self.channel} gateway failed: {type(error).__name__}: {error}",
                retryable=True,
            ) from error

    def describe(self) -> str:
        # Neither credentials nor a query string (either may hold a token) are shown.
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"HTTP POST to {parts.scheme}://{host}{parts.path}, signed (Standard Webhooks)"


# --- files and console --------------------------------------------------------------------


class FileBackend(ChannelBackend):
    """One JSON file per message (`OutgoingMessage.payload()`), at
    `OPTIONS["DIR"]/<merchant>/<campaign id or "test">/<key>.json`: the demo's outbox.

    Written to a temporary file in the same directory and renamed over the final name, so a
    reader never sees half a file and a repeat of a key leaves exactly one. No fsync: an
    outbox for demos and benchmarks, not a durable queue.
    """

    def __init__(self, channel: str, **options: Any) -> None:
        super().__init__(channel, **options)
        directory = options.get("DIR")
        if not directory:
            raise ChannelError(
                NO_OPTION.format(
                    channel=channel, kind="file", option="DIR", env="CAMPAIGN_OUTBOX_DIR"
                ),
                retryable=False,
            )
        self.directory = Path(directory)
        self._made: set[Path] = set()

    def path_of(self, message: OutgoingMessage) -> Path:
        campaign = "test" if message.campaign_id is None else str(message.campaign_id)
        return self.directory / message.merchant / campaign / f"{message.key}.json"

    def send(self, message: OutgoingMessage) -> None:
        # A repeat of a key (after a kill between the rename and the record) writes the same
        # file again: one file per key.
        path = self.path_of(message)
        content = json.dumps(message.payload(), ensure_ascii=False, indent=2).encode()
        try:
            if path.parent not in self._made:  # once per campaign, not per message
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(path.parent)
            # A name of its own per key and process (keys are unique; no random names to try:
            # this is the benchmark's hot path); owner-only, as the customers' addresses are.
            temporary = path.parent / f".{message.key}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(content)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as error:
            raise ChannelError(f"Cannot write {path}: {error}", retryable=True) from error

    def describe(self) -> str:
        return f"files in {self.directory}"


class ConsoleBackend(ChannelBackend):
    """A short readable block per message on standard output (`OPTIONS["STREAM"]`, or the
    `stream` attribute, to write elsewhere): for development."""

    def __init__(self, channel: str, **options: Any) -> None:
        super().__init__(channel, **options)
        self.stream: TextIO = options.get("STREAM") or sys.stdout

    def send(self, message: OutgoingMessage) -> None:
        campaign = "test send" if message.campaign_id is None else f"campaign {message.campaign_id}"
        lines = [
            f"--- {message.channel} {message.key} ({message.merchant}, {campaign})",
            f"To: {message.to}" + (f" (customer {message.customer})" if message.customer else ""),
        ]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        lines += ["", message.body, ""]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()

    def describe(self) -> str:
        return "printed on the console (standard output)"
