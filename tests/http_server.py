"""A local HTTP server that records what it is sent (channels, webhooks)."""

from __future__ import annotations

import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingHttpServer(ThreadingHTTPServer):
    """Keeps each request (headers, body) and answers with the next of `answers`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.requests: list[tuple[str, Message, bytes]] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.release = threading.Event()  # a "hang" answer waits for it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/messages"


class RecordingHandler(BaseHTTPRequestHandler):
    server: RecordingHttpServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, self.headers, body))
        status, headers, answer = (
            self.server.answers.pop(0) if self.server.answers else (202, {}, b"")
        )
        if status == 0:  # hang until the test ends
            self.server.release.wait(5)
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format, *args):
        pass
