"""A very fast fake upstream for the bench: Anthropic, OpenAI and Gemini answers, fixed and precomputed.

A raw asyncio protocol on uvloop with httptools parsing (measured faster here than granian or
uvicorn with an ASGI app). It reads only the path and, for Anthropic and OpenAI, whether the body
asks for a stream. Streams go out with chunked transfer encoding, one write per SSE event as a
real provider sends them (``--whole-streams``: all events in one write); whole answers in one write.

Run: ``python bench/fake_upstream.py [--port 0]``; it prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from dataclasses import dataclass

import httptools
import uvloop

import payloads


@dataclass(frozen=True, slots=True)
class Reply:
    """A precomputed answer: the whole response, or a head and the chunks of a stream."""

    head: bytes
    chunks: tuple[bytes, ...] = ()

    @classmethod
    def whole(cls, body: bytes, content_type: bytes = b"application/json") -> Reply:
        return cls(b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
                   + str(len(body)).encode() + b"\r\nrequest-id: req_bench\r\n\r\n" + body)

    @classmethod
    def stream(cls, events: list[bytes]) -> Reply:
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: req_bench\r\n\r\n")
        chunks = [b"%x\r\n" % len(e) + e + b"\r\n" for e in events]
        chunks[-1] += b"0\r\n\r\n"
        return cls(head, tuple(chunks))


@dataclass(frozen=True, slots=True)
class Replies:
    anthropic: Reply
    anthropic_stream: Reply
    openai: Reply
    openai_stream: Reply
    openai_stream_no_usage: Reply
    gemini: Reply
    gemini_stream: Reply
    responses: Reply
    responses_stream: Reply
    not_found: Reply

    @classmethod
    def build(cls) -> Replies:
        return cls(
            anthropic=Reply.whole(payloads.anthropic_json()),
            anthropic_stream=Reply.stream(payloads.anthropic_events()),
            openai=Reply.whole(payloads.openai_json()),
            openai_stream=Reply.stream(payloads.openai_events(include_usage=True)),
            openai_stream_no_usage=Reply.stream(payloads.openai_events(include_usage=False)),
            gemini=Reply.whole(payloads.gemini_json()),
            gemini_stream=Reply.stream(payloads.gemini_events()),
            responses=Reply.whole(payloads.responses_json()),
            responses_stream=Reply.stream(payloads.responses_events()),
            not_found=Reply(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 38\r\n\r\n"
                            b'{"error":{"message":"no such route"}}\n'),
        )

    def pick(self, url: bytes, body: bytes) -> Reply:
        path = url.split(b"?", 1)[0]
        if path.endswith(b"/v1/messages"):
            return self.anthropic_stream if _wants_stream(body) else self.anthropic
        if path.endswith(b"/chat/completions"):
            if not _wants_stream(body):
                return self.openai
            return self.openai_stream if b'"include_usage":true' in body.replace(b" ", b"") \
                else self.openai_stream_no_usage
        if path.endswith(b"/responses"):
            return self.responses_stream if _wants_stream(body) else self.responses
        if path.endswith(b":streamGenerateContent"):
            return self.gemini_stream
        if path.endswith(b":generateContent"):
            return self.gemini
        return self.not_found


def _wants_stream(body: bytes) -> bool:
    return b'"stream":true' in body or b'"stream": true' in body


class Connection(asyncio.Protocol):
    """One keep-alive client connection; httptools calls the on_* methods as it parses."""

    __slots__ = ("replies", "whole_streams", "transport", "parser", "url", "body")

    def __init__(self, replies: Replies, whole_streams: bool) -> None:
        self.replies = replies
        self.whole_streams = whole_streams
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio classes
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        t = self.transport
        assert t is not None
        reply = self.replies.pick(self.url, b"".join(self.body))
        t.write(reply.head)
        if self.whole_streams:
            t.writelines(reply.chunks)
        else:
            for c in reply.chunks:
                t.write(c)
        if not self.parser.should_keep_alive():
            t.close()


async def serve(host: str, port: int, whole_streams: bool = False) -> None:
    replies = Replies.build()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(replies, whole_streams), host, port, backlog=4096,
                                      reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    stop: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done)
    async with server:
        await stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--whole-streams", action="store_true",
                    help="send each stream in one write instead of one write per event")
    args = ap.parse_args()
    uvloop.run(serve(args.host, args.port, args.whole_streams))


if __name__ == "__main__":
    main()
