"""A fake Anthropic API on loopback that the official SDK talks to through `base_url` unchanged.

Messages (plain JSON and streaming SSE), count_tokens, Message Batches (create, retrieve, list,
results JSONL; expired and errored items), usage with prompt-cache fields from a simulated prefix
cache, `anthropic-ratelimit-*` headers (and, when given limits, enforcement with 429), and
injectable faults: 429 with retry-after, 429 spend limit, 529, 500, a hang past the client's
timeout, a dropped connection and a malformed body. It bills every answer it generates (a hung
answer too: the API does the work even when the client gave up) and counts what it billed and how
often the same request was billed twice.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.teachers.fake_batches import FakeBatches
from tests.teachers.fake_model import FakeModel

FAULT_KINDS = ("429", "spend", "529", "500", "timeout", "drop", "malformed")
SPEND_MESSAGE = (
    "You have reached your specified workspace API usage limits. You will regain access on "
    "2099-01-01 at 00:00 UTC."
)


@dataclass
class Faults:
    """Which faults to inject on /v1/messages.

    Args:
        rates: probability per request of each kind in `FAULT_KINDS`.
        script: faults for the first requests, in order ("ok" for none); then `rates`.
        seed: of the fault draws.
        reject: prompts containing this get a 400 invalid_request_error (never retryable).
        spend_limit_after: after this many billed answers every request gets the spend limit.
        spend_status: 429 (`enforced_spend_limit_reached`) or 400 (a workspace limit the user set:
            invalid_request_error "You have reached your specified workspace API usage limits").
        retry_after_s: the retry-after of injected 429s and 529s.
    """

    rates: dict[str, float] = field(default_factory=dict)
    script: list[str] = field(default_factory=list)
    seed: int = 0
    reject: str | None = None
    spend_limit_after: int | None = None
    spend_status: int = 429
    retry_after_s: float = 0.05

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()

    def draw(self) -> str:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            roll, edge = self.rng.random(), 0.0
            for kind, rate in self.rates.items():
                edge += rate
                if roll < edge:
                    return kind
        return "ok"


class FakeAnthropic:
    """The fake API server (a context manager; `base_url` once entered).

    Args:
        latency_s: time to answer a plain request.
        stream_interval_s: time between the text deltas of a streamed answer (4 deltas).
        answer_tokens: pad answers to about this many tokens (None: a short answer).
        hang_s: how long the `timeout` fault holds a request before answering.
        faults: what to inject (None: nothing).
        rate_limits: {"requests"|"input"|"output": per minute} to enforce with 429s, or None.
        rate_burst_s: the enforced buckets hold this many seconds of each limit.
        min_cache_tokens: the minimum cacheable prefix of every model.
        batch_processing_s: how long a batch stays in progress.
        batch_faults: {"expired"|"errored": probability} for an item's first submission.
        batch_create_delay_s: hold the batch-create response after creating the batch.
        reply: the answer's text for a prompt (None: a short code block).
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        stream_interval_s: float = 0.0,
        answer_tokens: int | None = None,
        hang_s: float = 1.0,
        faults: Faults | None = None,
        rate_limits: dict[str, float] | None = None,
        rate_burst_s: float = 5.0,
        min_cache_tokens: int = 1024,
        batch_processing_s: float = 0.05,
        batch_faults: dict[str, float] | None = None,
        batch_create_delay_s: float = 0.0,
        fail_first: int = 0,
        reply: Callable[[str], str] | None = None,
    ) -> None:
        self.latency_s, self.stream_interval_s, self.hang_s = latency_s, stream_interval_s, hang_s
        self.faults = faults or Faults(script=["500"] * fail_first)
        self.model = FakeModel(answer_tokens, min_cache_tokens, rate_limits, rate_burst_s, reply)
        self.batches = FakeBatches(self, batch_processing_s, batch_faults or {})
        self.batch_create_delay_s = batch_create_delay_s
        self.requests: list[dict] = []
        self.injected: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256})
        self.server = server_class(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeAnthropic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what was billed ------------------------------------------------------------------------

    @property
    def bills(self) -> list[dict[str, Any]]:
        return self.model.bills

    def billed_prompts(self) -> Counter[str]:
        """How often each prompt (the last user turn) was billed."""
        return Counter(b["prompt"] for b in self.model.bills)

    def billed_twice(self) -> int:
        """Requests (by their full body) billed more than once."""
        return sum(n > 1 for n in Counter(b["key"] for b in self.model.bills).values())

    def billed_tokens(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for b in self.model.bills:
            total.update({k: v for k, v in b.items() if isinstance(v, int)})
        return total

    def billed_usd(self, prices: dict[str, dict[str, float]]) -> float:
        """Dollars billed, from the token counts and `prices[model]` per million tokens."""
        usd = 0.0
        for b in self.model.bills:
            p = prices[b["model"]]
            cost = (
                b["input"] * p["input"]
                + b["output"] * p["output"]
                + b["cache_read"] * p["cache_read"]
                + b["cache_write_5m"] * p["cache_write_5m"]
                + b["cache_write_1h"] * p["cache_write_1h"]
            ) / 1e6
            usd += cost * (p["batch_discount"] if b["batch"] else 1.0)
        return usd

    # --- the messages endpoint -------------------------------------------------------------------

    def messages(self, handler: Any, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._messages(handler, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _messages(self, handler: Any, body: dict[str, Any]) -> None:
        # Validation comes first, as on the API: a rejected prompt gets its 400 on the first try,
        # so a test can tell "never retried" from "retried after a transient fault".
        if self.faults.reject and self.faults.reject in json.dumps(body["messages"]):
            error = _error("invalid_request_error", "prompt is not allowed here")
            return handler.send_json(400, error, self.model.ratelimit_headers())
        fault = self.faults.draw()
        after = self.faults.spend_limit_after
        if after is not None and len(self.model.bills) >= after:
            fault = "spend"
        self.injected[fault] += 1
        if fault != "ok" and self._inject(handler, fault):
            return
        limited = self.model.admit(body)
        if limited is not None:
            return handler.send_json(429, _error("rate_limit_error", "rate limited"), limited)
        time.sleep(self.latency_s)
        message = self.model.answer(body, batch=False)
        headers = self.model.ratelimit_headers()
        if body.get("stream"):
            return handler.send_sse(_sse_events(message), self.stream_interval_s, headers)
        handler.send_json(200, message, headers)

    def _inject(self, handler: Any, fault: str) -> bool:
        """Answer with `fault`; False when the fault lets the request go on (a hang)."""
        limits = self.model.ratelimit_headers()  # the API sends them with errors too
        wait = {"retry-after": str(self.faults.retry_after_s), **limits}
        if fault == "429":
            handler.send_json(429, _error("rate_limit_error", "Rate limited"), wait)
        elif fault == "spend" and self.faults.spend_status == 400:
            handler.send_json(400, _error("invalid_request_error", SPEND_MESSAGE))
        elif fault == "spend":
            error = _error("rate_limit_error", "Your organization reached its monthly spend cap")
            error["error"]["details"] = {"error_code": "enforced_spend_limit_reached"}
            handler.send_json(429, error)
        elif fault == "529":
            handler.send_json(529, _error("overloaded_error", "Overloaded"), wait)
        elif fault == "500":
            handler.send_json(500, _error("api_error", "Internal server error"), limits)
        elif fault == "drop":
            handler.drop()
        elif fault == "malformed":
            handler.send_raw(200, b'{"id": "msg_broken", "type": "message", "content": [')
        elif fault == "timeout":
            time.sleep(self.hang_s)  # then answer (and bill) as if nothing happened
            return False
        return True


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The streaming events of a complete `message`, its text in four deltas."""
    text = message["content"][0]["text"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    step = max(1, len(text) // 4 + 1)
    deltas = [text[i : i + step] for i in range(0, len(text), step)]
    return [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        *[
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": d},
                },
            )
            for d in deltas
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def _handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            path = self.path.split("?")[0]
            if path == "/v1/messages":
                fake.messages(self, body)
            elif path == "/v1/messages/count_tokens":
                self.send_json(200, {"input_tokens": fake.model.count_input(body)})
            elif path == "/v1/messages/batches":
                batch = fake.batches.create(body["requests"])
                time.sleep(fake.batch_create_delay_s)
                self.send_json(200, batch)
            else:
                self.send_json(404, _error("not_found_error", f"no route {path}"))

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["v1", "messages", "batches"]:
                return self.send_json(200, fake.batches.listing())
            if len(parts) >= 4 and parts[:3] == ["v1", "messages", "batches"]:
                if len(parts) == 5 and parts[4] == "results":
                    lines = fake.batches.results(parts[3])
                    if lines is not None:
                        return self.send_raw(200, lines, "application/binary")
                batch = fake.batches.get(parts[3])
                if batch is not None and len(parts) == 4:
                    return self.send_json(200, batch)
            self.send_json(404, _error("not_found_error", f"no such resource {self.path}"))

        def send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
            self.send_raw(status, json.dumps(payload).encode(), "application/json", headers)

        def send_raw(
            self, status: int, data: bytes, ctype: str = "application/json", headers: Any = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{time.monotonic_ns()}")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout): the work is done and billed anyway
                self.close_connection = True

        def send_sse(self, events: list, interval_s: float, headers: dict) -> None:
            try:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                    if name == "content_block_delta":
                        time.sleep(interval_s)
            except OSError:
                pass
            self.close_connection = True

        def drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Handler
