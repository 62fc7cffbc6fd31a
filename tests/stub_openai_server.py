"""A scriptable OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1, for the rephrasing tests.

Questions in these tests are written ``Q-<pair id>: …`` and their rephrasings ``R-<pair id>: …`` so
the server can tell what a request is for: a request to rephrase is keyed by the pair id, a request
to solve (it has a system prompt) by ``Q-<pair id>`` or ``R-<pair id>``. The server counts requests
received and answered (status 200) per key, records when each request arrived, and the most in
flight at once. A script ``(key, attempt) -> Reply`` decides each answer; by default a valid
rephrasing. Other tests name their own ``key``: a function of the request body.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from corewarding.data.records import Problem


def question(pair: str) -> str:
    return f"Q-{pair}: Tom has 7 apples and buys 3 more at the market. How many apples does he have now?"


def rephrasing(pair: str) -> str:
    return f"R-{pair}: Ana owns 7 pens and a friend gives her 3 more. How many pens does she own in total?"


def problems(count: int) -> list[Problem]:
    return [Problem(str(i), question(str(i)), "10") for i in range(count)]


@dataclass
class Reply:
    """One answer: a status, a chat message (``content``) or a raw ``body``, headers, a delay first;
    ``drop``: close the connection without answering (a server that crashed)."""

    status: int = 200
    content: str | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    finish_reason: str = "stop"
    drop: bool = False


def good(pair: str, attempt: int) -> Reply:
    return Reply(content=f"[REPHRASED]\n{rephrasing(pair)}\n[/REPHRASED]")


def pair_key(body: dict) -> str:
    """The pair id of a request to rephrase, ``Q-<pair id>`` or ``R-<pair id>`` of a request to solve."""
    view, pair = re.search(r"([QR])-(\w+):", body["messages"][-1]["content"]).groups()
    return f"{view}-{pair}" if body["messages"][0]["role"] == "system" else pair


class StubServer:
    """Use as a context manager; ``url`` is the API root (``…/v1``)."""

    def __init__(self, script: Callable[[str, int], Reply] = good, key: Callable[[dict], str] = pair_key):
        self.script = script
        self.key = key
        self.received: Counter[str] = Counter()
        self.arrived: defaultdict[str, list[float]] = defaultdict(list)
        self.answered: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.after_answer: Callable[[int], None] | None = None
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.stub = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        stub: StubServer = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pair = stub.key(body)
        with stub.lock:
            stub.received[pair] += 1
            stub.arrived[pair].append(time.monotonic())
            attempt = stub.received[pair]
            stub.bodies.append(body)
            stub.headers.append(dict(self.headers))
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            reply = stub.script(pair, attempt)
            time.sleep(reply.delay_s)
            # Out of flight before the answer goes out: the client may send its next request as soon as
            # it has the answer, before this thread would get to count it down.
            with stub.lock:
                stub.in_flight -= 1
            if reply.drop:
                self.close_connection = True
                return
            payload = reply.body
            if payload is None:
                message = {"role": "assistant", "content": reply.content}
                choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
                payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [choice]}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            return
        if reply.status == 200:
            with stub.lock:
                stub.answered[pair] += 1
                answered = sum(stub.answered.values())
            if stub.after_answer is not None:
                stub.after_answer(answered)

    def log_message(self, *args) -> None:
        pass
