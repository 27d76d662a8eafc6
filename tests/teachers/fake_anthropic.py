"""A small fake Anthropic Messages API on loopback, for driving the official SDK in tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeAnthropic:
    """Answers POST /v1/messages with a fenced Python answer; counts requests and concurrency.

    Args:
        latency_s: how long each answer takes.
        fail_first: answer the first N requests with HTTP 500 (the SDK retries them).
    """

    def __init__(self, latency_s: float = 0.0, fail_first: int = 0) -> None:
        self.latency_s, self.fail_first = latency_s, fail_first
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeAnthropic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with fake._lock:
                    fake.requests.append(body)
                    n = len(fake.requests)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.latency_s)
                    if n <= fake.fail_first:
                        self._send(
                            500,
                            {"type": "error", "error": {"type": "api_error", "message": "boom"}},
                        )
                        return
                    prompt = body["messages"][-1]["content"]
                    text = f"```python\ndef answer():\n    return {len(prompt)}\n```"
                    self._send(
                        200,
                        {
                            "id": f"msg_{n}",
                            "type": "message",
                            "role": "assistant",
                            "model": body["model"],
                            "content": [{"type": "text", "text": text}],
                            "stop_reason": "end_turn",
                            "stop_sequence": None,
                            "usage": {
                                "input_tokens": len(prompt) // 4,
                                "output_tokens": 20,
                                "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 0,
                            },
                        },
                    )
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
