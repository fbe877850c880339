"""Channel backends: email through a real local SMTP server, signed HTTP posts to a local
HTTP server, the file outbox and the console; the backend chosen from the settings and what
the campaign page says each channel does. No database."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import io
import json
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from campaigns.channels import (
    ChannelBackend,
    ChannelError,
    ConsoleBackend,
    EmailBackend,
    FileBackend,
    HttpBackend,
    OutgoingMessage,
    backend_for,
    channel_status,
)
from config.settings import campaign_channels

SMTP = "django.core.mail.backends.smtp.EmailBackend"
SECRET = "whsec_" + base64.b64encode(b"a shared secret of 32 bytes long").decode()


def outgoing(**fields) -> OutgoingMessage:
    values = {
        "key": "c12-d3456",
        "channel": "email",
        "merchant": "acme",
        "campaign_id": 12,
        "customer": "C-0042",
        "to": "ann@example.com",
        "subject": "Double points this weekend",
        "body": "Hi Ann,\nevery purchase earns double points until Sunday.",
    }
    return OutgoingMessage(**{**values, **fields})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- email over SMTP ----------------------------------------------------------------------


class SmtpRecorder:
    """An aiosmtpd handler keeping what it received, and refusing some recipients."""

    def __init__(self) -> None:
        self.received: list[tuple[tuple[str, int], str, list[str], Message]] = []
        self.refusals: dict[str, str] = {}
        #: An answer to give at the end of DATA instead of accepting (e.g. "554 ...").
        self.refuse_data = ""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_data:
            return self.refuse_data
        parsed = email.message_from_bytes(envelope.content)
        self.received.append((session.peer, envelope.mail_from, envelope.rcpt_tos, parsed))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.recorder = SmtpRecorder()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.CAMPAIGN_FROM_EMAIL = "Acme Rewards <news@acme.example>"
    settings.CAMPAIGN_CHANNELS = {
        "email": {"BACKEND": "campaigns.channels.EmailBackend", "OPTIONS": {"EMAIL_BACKEND": SMTP}}
    }
    yield server
    server.stop()


def test_email_is_delivered_over_smtp_with_its_headers_on_one_connection(smtp_server):
    # given
    messages = [
        outgoing(key=f"c12-d{n}", to=f"customer{n}@example.com", subject=f"Offer {n}")
        for n in range(3)
    ]

    # when
    with backend_for("email") as backend:
        for message in messages:
            backend.send(message)

    # then
    received = smtp_server.recorder.received
    assert [rcpt for _, _, rcpt, _ in received] == [[m.to] for m in messages]
    assert len({peer for peer, _, _, _ in received}) == 1  # one connection for the batch
    _, mail_from, _, first = received[0]
    assert mail_from == "news@acme.example"
    assert first["From"] == "Acme Rewards <news@acme.example>"
    assert first["To"] == "customer0@example.com"
    assert first["Subject"] == "Offer 0"
    assert first["Message-ID"] == "<c12-d0@acme.example>"
    assert first["X-Campaign-Id"] == "12"
    # SMTP carries CRLF line ends
    assert first.get_payload(decode=True).decode().splitlines() == messages[0].body.splitlines()


def test_over_smtp_each_message_is_committed_once_as_it_is_handed_over(smtp_server):
    commits: list[str] = []

    with backend_for("email") as backend:
        backend.deliver(outgoing(key="c12-d1", to="ann@example.com"), lambda: commits.append("1"))
        backend.deliver(outgoing(key="c12-d2", to="bob@example.com"), lambda: commits.append("2"))

    assert commits == ["1", "2"]
    assert [r[2] for r in smtp_server.recorder.received] == [
        ["ann@example.com"],
        ["bob@example.com"],
    ]


def test_over_smtp_a_message_refused_at_its_end_raises_after_the_commit(smtp_server):
    # given: the server takes the message's lines, then refuses it at the final "."
    smtp_server.recorder.refuse_data = "554 Message rejected as spam"
    commits: list[str] = []

    # when
    with backend_for("email") as backend, pytest.raises(ChannelError) as refused:
        backend.deliver(outgoing(key="c12-d1", to="ann@example.com"), lambda: commits.append("1"))

    # then: recorded, then refused: the sender changes its record back to failed
    assert commits == ["1"]
    assert not refused.value.retryable
    assert "554" in str(refused.value)


def test_over_smtp_the_final_dot_is_not_held_back_by_nagles_algorithm(smtp_server):
    # The lone final "." would otherwise wait for the server's delayed ACK (40 ms a message).
    with backend_for("email") as backend:
        backend.deliver(outgoing(key="c12-d1", to="ann@example.com"), lambda: None)
        sock = backend.connection.connection.sock

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_over_smtp_a_commit_that_fails_raises_and_the_next_message_reconnects(smtp_server):
    # The message was handed over before the record failed: it arrives, and the sender (which
    # dies of the error) leaves its row to be sent again, with the same Message-ID.
    def broken() -> None:
        raise RuntimeError("database gone")

    with backend_for("email") as backend:
        with pytest.raises(RuntimeError):
            backend.deliver(outgoing(key="c12-d1", to="ann@example.com"), broken)
        backend.deliver(outgoing(key="c12-d2", to="bob@example.com"), lambda: None)

    received = smtp_server.recorder.received
    assert [r[2] for r in received] == [["ann@example.com"], ["bob@example.com"]]
    assert len({r[0] for r in received}) == 2  # a fresh connection for the second


def test_over_smtp_a_refused_recipient_is_not_committed_and_the_connection_is_reused(
    smtp_server,
):
    smtp_server.recorder.refusals["gone@example.com"] = "550 No such user"
    commits: list[str] = []

    with backend_for("email") as backend:
        with pytest.raises(ChannelError) as refused:
            backend.deliver(
                outgoing(key="c12-d1", to="gone@example.com"), lambda: commits.append("1")
            )
        backend.deliver(outgoing(key="c12-d2", to="bob@example.com"), lambda: commits.append("2"))

    assert not refused.value.retryable
    assert commits == ["2"]
    peers = {r[0] for r in smtp_server.recorder.received}
    assert len(peers) == 1


def test_a_recipient_the_server_refuses_is_a_permanent_error_and_the_batch_goes_on(smtp_server):
    smtp_server.recorder.refusals["gone@example.com"] = "550 5.1.1 No such user"

    with backend_for("email") as backend:
        with pytest.raises(ChannelError) as refused:
            backend.send(outgoing(key="c12-d1", to="gone@example.com"))
        backend.send(outgoing(key="c12-d2", to="here@example.com"))

    assert refused.value.retryable is False
    assert "550" in str(refused.value)
    assert "No such user" in str(refused.value)
    assert [rcpt for _, _, rcpt, _ in smtp_server.recorder.received] == [["here@example.com"]]


def test_a_recipient_refused_for_now_is_retryable(smtp_server):
    # Greylisting: "try again later".
    smtp_server.recorder.refusals["new@example.com"] = "450 4.2.0 Greylisted, come back later"

    with backend_for("email") as backend, pytest.raises(ChannelError) as refused:
        backend.send(outgoing(to="new@example.com"))

    assert refused.value.retryable is True
    assert "450" in str(refused.value)


def test_a_server_gone_is_retryable_and_the_next_send_reconnects(smtp_server):
    with backend_for("email") as backend:
        backend.send(outgoing(key="c12-d1"))
        smtp_server.stop()

        with pytest.raises(ChannelError) as gone:
            backend.send(outgoing(key="c12-d2"))
        assert gone.value.retryable is True

        smtp_server.start()  # back, on the same port
        backend.send(outgoing(key="c12-d3"))

    received = smtp_server.recorder.received
    assert [m["Message-ID"] for _, _, _, m in received] == [
        "<c12-d1@acme.example>",
        "<c12-d3@acme.example>",
    ]
    assert received[0][0] != received[1][0]  # a new connection


def test_no_server_to_connect_to_is_retryable_at_open(smtp_server, settings):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    backend = backend_for("email")

    with pytest.raises(ChannelError) as refused:
        backend.open()

    assert refused.value.retryable is True
    assert "Cannot connect to the email server" in str(refused.value)


@pytest.mark.parametrize("address", ["not an address", "ann@", "ann@example.com\nBcc: x@y.z"])
def test_an_invalid_address_is_permanent_and_nothing_is_sent(settings, address):
    # pytest-django's locmem email backend, the default of EmailBackend's EMAIL_BACKEND.
    backend = EmailBackend("email")

    with backend, pytest.raises(ChannelError) as invalid:
        backend.send(outgoing(to=address))

    assert invalid.value.retryable is False
    assert mail.outbox == []


def test_a_test_send_comes_from_the_default_address_without_a_campaign_header(settings):
    settings.CAMPAIGN_FROM_EMAIL = ""
    settings.DEFAULT_FROM_EMAIL = "hello@shop.example"

    with EmailBackend("email") as backend:
        backend.send(outgoing(key="test-5f0c", campaign_id=None, customer=""))

    [sent] = mail.outbox
    assert sent.from_email == "hello@shop.example"
    assert sent.extra_headers["Message-ID"] == "<test-5f0c@shop.example>"
    assert "X-Campaign-Id" not in sent.extra_headers


# --- HTTP (SMS and push) ------------------------------------------------------------------


def http_backend(url: str, **options) -> HttpBackend:
    return HttpBackend("sms", URL=url, SECRET=SECRET, **options)


def test_an_sms_is_posted_as_json_signed_the_standard_webhooks_way(http_server):
    message = outgoing(
        channel="sms", to="+15145550100", subject="", body="Café crème: double points"
    )

    with http_backend(http_server.url) as backend:
        backend.send(message)

    [(path, headers, body)] = http_server.requests
    assert path == "/messages"
    assert json.loads(body) == {
        "id": "c12-d3456",
        "channel": "sms",
        "merchant": "acme",
        "campaign": 12,
        "customer": "C-0042",
        "to": "+15145550100",
        "subject": "",
        "body": "Café crème: double points",
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "c12-d3456"
    assert headers["webhook-id"] == "c12-d3456"
    # the receiver's check, by the reference library ...
    as_received = dict(headers.items())
    assert Webhook(SECRET).verify(body, as_received)["id"] == "c12-d3456"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret").decode()).verify(body, as_received)
    # ... and by hand
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_a_repeat_of_a_message_carries_the_same_idempotency_key(http_server):
    with http_backend(http_server.url) as backend:
        backend.send(outgoing(channel="push", key="c12-d7"))
        backend.send(outgoing(channel="push", key="c12-d7"))

    assert [h["Idempotency-Key"] for _, h, _ in http_server.requests] == ["c12-d7", "c12-d7"]


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_a_server_error_or_busy_answer_is_retryable(http_server, status):
    http_server.answers.append((status, {}, b"try later"))

    with http_backend(http_server.url) as backend, pytest.raises(ChannelError) as failed:
        backend.send(outgoing(channel="sms"))

    assert failed.value.retryable is True
    assert str(status) in str(failed.value)


def test_a_rejected_request_is_permanent_with_the_status_and_the_start_of_the_answer(
    http_server,
):
    answer = ("invalid phone number " + "x" * 300).encode()
    http_server.answers.append((400, {"Content-Type": "text/plain"}, answer))

    with http_backend(http_server.url) as backend, pytest.raises(ChannelError) as rejected:
        backend.send(outgoing(channel="sms", to="+1"))

    assert rejected.value.retryable is False
    assert str(rejected.value) == f"The sms gateway answered 400: {answer.decode()[:200]}"


def test_a_redirect_is_not_followed_and_is_permanent(http_server):
    http_server.answers.append((302, {"Location": "/elsewhere"}, b""))

    with http_backend(http_server.url) as backend, pytest.raises(ChannelError) as redirected:
        backend.send(outgoing(channel="sms"))

    assert redirected.value.retryable is False
    assert "302" in str(redirected.value)
    assert [path for path, _, _ in http_server.requests] == ["/messages"]


def test_an_unreachable_gateway_is_retryable():
    backend = http_backend(f"http://127.0.0.1:{free_port()}/")

    with backend, pytest.raises(ChannelError) as unreachable:
        backend.send(outgoing(channel="sms"))

    assert unreachable.value.retryable is True
    assert "unreachable" in str(unreachable.value)


def test_a_gateway_that_does_not_answer_in_time_is_retryable(http_server):
    http_server.answers.append((0, {}, b""))  # hangs

    backend = http_backend(http_server.url, TIMEOUT=0.2)

    with backend, pytest.raises(ChannelError) as timed_out:
        backend.send(outgoing(channel="sms"))

    assert timed_out.value.retryable is True


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"SECRET": SECRET}, "CAMPAIGN_PUSH_URL"),
        ({"URL": "https://push.example/send"}, "CAMPAIGN_PUSH_SECRET"),
        (
            {"URL": "https://push.example/send", "SECRET": "whsec_not*base64"},
            "CAMPAIGN_PUSH_SECRET",
        ),
        ({"URL": "file:///etc/passwd", "SECRET": SECRET}, "CAMPAIGN_PUSH_URL"),
    ],
)
def test_an_unconfigured_http_channel_says_which_variable_to_set(settings, options, named):
    settings.CAMPAIGN_CHANNELS = {
        "push": {"BACKEND": "campaigns.channels.HttpBackend", "OPTIONS": options}
    }

    with pytest.raises(ChannelError) as unconfigured:
        backend_for("push")

    assert unconfigured.value.retryable is False
    assert named in str(unconfigured.value)


# --- files and console --------------------------------------------------------------------


def test_a_message_is_written_as_json_under_merchant_and_campaign(tmp_path):
    backend = FileBackend("push", DIR=str(tmp_path))

    with backend:
        backend.send(outgoing(channel="push", key="c12-d1", to="C-0042"))
        backend.send(outgoing(channel="push", key="test-9a1b", campaign_id=None, customer=""))

    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert written == ["acme/12/c12-d1.json", "acme/test/test-9a1b.json"]
    content = json.loads((tmp_path / "acme/12/c12-d1.json").read_text(encoding="utf-8"))
    assert content == outgoing(channel="push", key="c12-d1", to="C-0042").payload()
    assert content["campaign"] == 12


def test_a_file_is_in_place_when_the_message_is_committed(tmp_path):
    backend = FileBackend("email", DIR=str(tmp_path))
    message = outgoing(key="c12-d1")
    present_at_commit: list[bool] = []

    backend.deliver(message, lambda: present_at_commit.append(backend.path_of(message).exists()))

    assert present_at_commit == [True]
    assert [p.name for p in backend.path_of(message).parent.iterdir()] == ["c12-d1.json"]


def test_a_repeat_of_a_key_leaves_one_file_with_the_last_content(tmp_path):
    with FileBackend("email", DIR=str(tmp_path)) as backend:
        backend.send(outgoing(body="first"))
        backend.send(outgoing(body="second"))

    assert [p.name for p in (tmp_path / "acme" / "12").iterdir()] == ["c12-d3456.json"]
    assert json.loads((tmp_path / "acme/12/c12-d3456.json").read_text())["body"] == "second"


def test_an_unwritable_outbox_is_a_retryable_error(tmp_path):
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the directory should be")

    with FileBackend("sms", DIR=str(blocker)) as backend, pytest.raises(ChannelError) as failed:
        backend.send(outgoing(channel="sms"))

    assert failed.value.retryable is True


@pytest.mark.parametrize(("field", "value"), [("key", "../../etc/x"), ("merchant", "a/b")])
def test_a_key_or_merchant_that_could_leave_the_outbox_is_refused(field, value):
    with pytest.raises(ValueError, match="Unsafe"):
        outgoing(**{field: value})


def test_the_console_shows_a_short_block_per_message():
    stream = io.StringIO()
    backend = ConsoleBackend("email", STREAM=stream)

    with backend:
        backend.send(outgoing())
        backend.send(
            outgoing(channel="sms", key="test-1", campaign_id=None, customer="", subject="")
        )

    assert stream.getvalue() == (
        "--- email c12-d3456 (acme, campaign 12)\n"
        "To: ann@example.com (customer C-0042)\n"
        "Subject: Double points this weekend\n"
        "\n"
        "Hi Ann,\nevery purchase earns double points until Sunday.\n"
        "\n"
        "--- sms test-1 (acme, test send)\n"
        "To: ann@example.com\n"
        "\n"
        "Hi Ann,\nevery purchase earns double points until Sunday.\n"
        "\n"
    )


# --- the settings -------------------------------------------------------------------------


def test_with_nothing_set_every_channel_writes_files_to_the_outbox(settings):
    settings.CAMPAIGN_CHANNELS = campaign_channels({})

    backends = {channel: backend_for(channel) for channel in ("email", "sms", "push")}

    assert {type(b) for b in backends.values()} == {FileBackend}
    assert backends["email"].directory == Path(settings.CAMPAIGN_OUTBOX_DIR)


def test_the_variables_choose_smtp_and_http():
    channels = campaign_channels(
        {
            "CAMPAIGN_EMAIL_BACKEND": "smtp",
            "CAMPAIGN_SMS_BACKEND": "http",
            "CAMPAIGN_SMS_URL": "https://sms.example/send",
            "CAMPAIGN_SMS_SECRET": SECRET,
            "CAMPAIGN_PUSH_BACKEND": "console",
        }
    )

    assert channels["email"] == {
        "BACKEND": "campaigns.channels.EmailBackend",
        "OPTIONS": {"EMAIL_BACKEND": SMTP},
    }
    assert channels["sms"] == {
        "BACKEND": "campaigns.channels.HttpBackend",
        "OPTIONS": {"URL": "https://sms.example/send", "SECRET": SECRET},
    }
    assert channels["push"]["BACKEND"] == "campaigns.channels.ConsoleBackend"


@pytest.mark.parametrize(
    "environ", [{"CAMPAIGN_EMAIL_BACKEND": "http"}, {"CAMPAIGN_PUSH_BACKEND": "fcm"}]
)
def test_a_backend_a_channel_cannot_use_stops_the_start(environ):
    with pytest.raises(ImproperlyConfigured, match="_BACKEND is"):
        campaign_channels(environ)


def test_an_unknown_channel_or_backend_is_a_permanent_error_naming_the_setting(settings):
    settings.CAMPAIGN_CHANNELS = {
        "email": {"BACKEND": "campaigns.channels.NoSuchBackend"},
        "sms": {"BACKEND": "campaigns.models.Campaign"},
        "push": {"OPTIONS": {}},
    }

    for channel, expected in [
        ("fax", "CAMPAIGN_CHANNELS"),
        ("email", "cannot be imported"),
        ("sms", "is not a ChannelBackend"),
        ("push", "CAMPAIGN_PUSH_BACKEND"),
    ]:
        with pytest.raises(ChannelError, match=expected) as failed:
            backend_for(channel)
        assert failed.value.retryable is False


def test_a_provider_of_ones_own_gets_its_options(settings):
    settings.CAMPAIGN_CHANNELS = {
        "sms": {"BACKEND": f"{__name__}.ProviderBackend", "OPTIONS": {"API_KEY": "k-1"}}
    }

    with backend_for("sms") as backend:
        backend.send(outgoing(channel="sms"))

    assert isinstance(backend, ProviderBackend)
    assert backend.sent == [("k-1", "c12-d3456")]
    assert backend.opened_and_closed == (True, True)


class ProviderBackend(ChannelBackend):
    def __init__(self, channel: str, **options) -> None:
        super().__init__(channel, **options)
        self.sent: list[tuple[str, str]] = []
        self.opened_and_closed = (False, False)

    def open(self) -> None:
        self.opened_and_closed = (True, False)

    def close(self) -> None:
        self.opened_and_closed = (self.opened_and_closed[0], True)

    def send(self, message: OutgoingMessage) -> None:
        self.sent.append((self.options["API_KEY"], message.key))


def test_the_status_says_what_each_channel_does_without_secrets(settings):
    settings.EMAIL_HOST = "smtp.example.com"
    settings.EMAIL_PORT = 587
    settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = True, False
    settings.CAMPAIGN_FROM_EMAIL = "news@acme.example"
    settings.CAMPAIGN_CHANNELS = campaign_channels(
        {
            "CAMPAIGN_EMAIL_BACKEND": "smtp",
            "CAMPAIGN_SMS_BACKEND": "http",
            "CAMPAIGN_SMS_URL": "https://user:pw@sms.example:8443/v1/send?token=t0p",
            "CAMPAIGN_SMS_SECRET": SECRET,
            "CAMPAIGN_PUSH_BACKEND": "http",
        }
    )

    status = channel_status()

    assert status["email"] == "SMTP via smtp.example.com:587 (STARTTLS), from news@acme.example"
    assert status["sms"] == (
        "HTTP POST to https://sms.example:8443/v1/send, signed (Standard Webhooks)"
    )
    assert status["push"].startswith("not configured: ")
    assert "CAMPAIGN_PUSH_URL" in status["push"]


def test_the_status_of_the_demo_names_the_outbox(settings, tmp_path):
    settings.CAMPAIGN_CHANNELS = {
        channel: {"BACKEND": "campaigns.channels.FileBackend", "OPTIONS": {"DIR": str(tmp_path)}}
        for channel in ("email", "sms", "push")
    }

    assert channel_status() == {c: f"files in {tmp_path}" for c in ("email", "sms", "push")}
