"""A fake Anthropic API that logs every request, for seeing exactly what a client sends.

Each request is written as one JSON file (method, path with query, headers, body) so captures
can be studied and kept as test data. Answers are shaped like Anthropic's so the client carries
on: a text reply by default, or one ``tool_use`` turn first when a tool is configured.

Run: ``python tests/e2e/capture_server.py --out DIR [--port N] [--tool Bash --tool-input JSON]``;
it prints ``listening on http://127.0.0.1:PORT`` once ready. Tests use ``CaptureServer`` directly.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

REDACTED_KEY = "sk-test"
_SECRET_HEADERS = {"x-api-key": REDACTED_KEY, "authorization": f"Bearer {REDACTED_KEY}"}


@dataclass(frozen=True)
class Responder:
    """Decides the answer to a Messages request.

    With ``tool_name`` set, a request that declares that tool and does not end in a
    ``tool_result`` is answered with a ``tool_use`` of it; everything else gets ``reply``.
    Deciding from the request alone keeps side calls (titles, summaries) from stealing turns.
    """

    reply: str = "ok"
    tool_name: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)

    def content(self, request: dict[str, Any], call_id: int) -> list[dict[str, Any]]:
        if self.tool_name and _declares_tool(request, self.tool_name) and not _ends_in_tool_result(request):
            return [
                {
                    "type": "tool_use",
                    "id": f"toolu_capture{call_id:06d}",
                    "name": self.tool_name,
                    "input": self.tool_input,
                }
            ]
        return [{"type": "text", "text": self.reply}]


def _declares_tool(request: dict[str, Any], name: str) -> bool:
    return any(isinstance(t, dict) and t.get("name") == name for t in request.get("tools") or [])


def _ends_in_tool_result(request: dict[str, Any]) -> bool:
    messages = request.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return False
    content = messages[-1].get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def estimate_tokens(body: bytes) -> int:
    """A rough count (4 bytes a token) so clients see plausible, nonzero usage."""
    return max(1, len(body) // 4)


def message_json(
    request: dict[str, Any], content: list[dict[str, Any]], call_id: int, input_tokens: int
) -> dict[str, Any]:
    """A complete non-streaming Anthropic Message."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {
        "id": f"msg_capture{call_id:06d}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "unknown"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(input_tokens, output_tokens=len(orjson.dumps(content)) // 4 or 1),
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def message_sse(message: dict[str, Any]) -> Iterator[bytes]:
    """The Anthropic SSE stream that a client would assemble into ``message``."""
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    yield _frame({"type": "message_start", "message": start})
    yield _frame({"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _frame(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            opened = {**block, "input": {}}
            yield _frame({"type": "content_block_start", "index": index, "content_block": opened})
            delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
        yield _frame({"type": "content_block_delta", "index": index, "delta": delta})
        yield _frame({"type": "content_block_stop", "index": index})
    yield _frame(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }
    )
    yield _frame({"type": "message_stop"})


def error_json(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _decode_body(raw: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


class CaptureServer:
    """A logging fake Anthropic API on 127.0.0.1, served from a background thread."""

    def __init__(self, out_dir: Path, responder: Responder | None = None, port: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.responder = responder or Responder()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def next_id(self) -> int:
        with self._lock:
            return next(self._counter)

    def start(self) -> CaptureServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="capture-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(self) -> list[dict[str, Any]]:
        """Every logged request so far, in arrival order."""
        return [orjson.loads(p.read_bytes()) for p in sorted(self.out_dir.glob("*.json"))]

    def log(self, call_id: int, record: dict[str, Any]) -> None:
        name = record["path"].split("?")[0].strip("/").replace("/", "_") or "root"
        path = self.out_dir / f"{call_id:04d}-{record['method']}-{name}.json"
        path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))


def _handler_for(server: CaptureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are logged as files; keep stderr quiet."""

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                raw = b"".join(chunks)
            else:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return _decode_body(raw, self.headers.get("Content-Encoding", "").lower())

        def _handle(self) -> None:
            call_id = server.next_id()
            body = self._read_body() if self.command not in ("GET", "HEAD") else b""
            headers = {k.lower(): _SECRET_HEADERS.get(k.lower(), v) for k, v in self.headers.items()}
            parsed: Any
            try:
                parsed = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                parsed = body.decode("utf-8", "replace")
            server.log(
                call_id, {"method": self.command, "path": self.path, "headers": headers, "body": parsed}
            )
            route = urlsplit(self.path).path
            if self.command == "POST" and route == "/v1/messages" and isinstance(parsed, dict):
                self._messages(parsed, body, call_id)
            elif self.command == "POST" and route == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": estimate_tokens(body)})
            else:
                self._send_json(404, error_json("not_found_error", f"{self.command} {route} not found"))

        def _messages(self, request: dict[str, Any], body: bytes, call_id: int) -> None:
            content = server.responder.content(request, call_id)
            message = message_json(request, content, call_id, estimate_tokens(body))
            if not request.get("stream"):
                self._send_json(200, message)
                return
            payload = b"".join(message_sse(message))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("request-id", f"req_capture{call_id:06d}")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _send_json(self, status: int, obj: dict[str, Any]) -> None:
            payload = orjson.dumps(obj)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("request-id", "req_capture")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for one JSON file per request")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="ok", help="text of every final answer")
    parser.add_argument("--tool", default=None, help="answer with a tool_use of this tool first")
    parser.add_argument("--tool-input", default="{}", help="JSON input of that tool_use")
    args = parser.parse_args()
    responder = Responder(reply=args.reply, tool_name=args.tool, tool_input=orjson.loads(args.tool_input))
    server = CaptureServer(args.out, responder, port=args.port).start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
