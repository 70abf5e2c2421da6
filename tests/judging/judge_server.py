"""A small OpenAI-protocol chat-completions server for judge tests: it checks the shape of every
request and answers with scripted verdicts."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from tests.conftest import GENERATOR_NAMES

DATA_URL = "data:image/webp;base64,"


def kind_of(text: str) -> str:
    for key, kind in (('"score"', "likert"), ('"verdict"', "binary"), ('"choice"', "pairwise"), ('"answer"', "question")):
        if f"one key {key}" in text:
            return kind
    raise AssertionError(f"no answer key asked for in {text[:200]!r}")


def red(image: Image.Image) -> float:
    return sum(image.convert("RGB").getpixel((0, 0))[:1])


class Call:
    """One request as the script sees it: its kind, decoded images, and whether it is the retry."""

    def __init__(self, body: dict):
        first = body["messages"][0]["content"]
        self.text = next(p["text"] for p in first if p["type"] == "text")
        self.kind = kind_of(self.text)
        self.images = [Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"][len(DATA_URL):])))
                       for p in first if p["type"] == "image_url"]
        self.retry = len(body["messages"]) > 1
        self.body = body


class JudgeServer:
    """``script(call) -> str | int | float``: the answer text, an HTTP status to fail with, or
    seconds to sleep before answering (to test timeouts)."""

    def __init__(self, script, *, model: str, key: str = "", box: int = 1024):
        self.script, self.model, self.key, self.box = script, model, key, box
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    call = server.check(self.path, dict(self.headers), raw)
                    answer = server.script(call)
                except Exception as exc:  # a malformed request: recorded, and refused
                    with server.lock:
                        server.problems.append(repr(exc))
                    answer = 400
                if isinstance(answer, float):
                    time.sleep(answer)  # the client has given up by now
                    return
                if isinstance(answer, int):
                    self.send_response(answer)
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "scripted failure"}}')
                    return
                payload = {
                    "id": "cmpl-1", "object": "chat.completion", "model": server.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100 + 50 * len(call.images), "completion_tokens": len(answer.split()),
                              "total_tokens": 0},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def check(self, path: str, headers: dict, raw: bytes) -> Call:
        assert path == "/v1/chat/completions", path
        assert headers.get("Content-Type") == "application/json"
        if self.key:
            assert headers.get("Authorization") == f"Bearer {self.key}", headers.get("Authorization")
        else:
            assert "Authorization" not in headers
        text = raw.decode()
        for name in GENERATOR_NAMES:  # blind: no generator identity anywhere in the request
            assert name not in text, f"generator {name} named in a request"
        body = json.loads(raw)
        assert body["model"] == self.model
        assert body["temperature"] == 0
        assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
        messages = body["messages"]
        assert messages[0]["role"] == "user"
        parts = messages[0]["content"]
        assert parts[-1]["type"] == "text" and all(p["type"] == "image_url" for p in parts[:-1])
        for p in parts[:-1]:
            assert p["image_url"]["url"].startswith(DATA_URL)
        call = Call(body)
        assert len(call.images) == (2 if call.kind == "pairwise" else 1)
        for im in call.images:
            assert im.format == "WEBP" and max(im.size) == self.box, (im.format, im.size)
            assert not im.info.get("exif") and not im.info.get("xmp")
        if call.retry:
            assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        else:
            assert len(messages) == 1
        with self.lock:
            self.calls.append(call)
        return call

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
