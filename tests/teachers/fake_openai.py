"""A local OpenAI-compatible chat-completions server on loopback (what vLLM or Ollama serve).

It answers each prompt with a Python function named after the prompt's first word, records
every request it saw, and can be told to fail the next requests with given HTTP statuses.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """`with FakeOpenAI() as server:` serves at `server.base_url` (ending in /v1)."""

    def __init__(self, model: str = "qwen-coder") -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next: list[int] = []  # HTTP statuses for the next requests, in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    status = fake.fail_next.pop(0) if fake.fail_next else 200
                if self.path != "/v1/chat/completions":
                    status = 404
                if status == 200 and body.get("model") != fake.model:
                    status = 404  # as vLLM answers a model it does not serve
                payload = fake.completion(body) if status == 200 else {"error": {"message": "no"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][-1]["content"]
        name = "".join(c for c in prompt.split()[0].lower() if c.isalpha()) or "answer"
        text = f"```python\ndef {name}(x):\n    return x\n```"
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 9},
        }
