"""Chat content parts (text, images, files) -> Messages content blocks."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from bytespike.protocols.openai_chat.inbound.common import ChatRequestError

_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _content_blocks(content: object, p: str, allowed: tuple[str, ...], *, required: bool) -> list[dict]:
    """Chat content (a string or parts) -> Messages blocks; blank text is dropped (Messages rejects it)."""
    if content is None:
        if required:
            raise ChatRequestError("content is required", p)
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise ChatRequestError("content must be a string or an array of content parts", p)
    blocks = []
    for j, part in enumerate(content):
        block = _part(part, f"{p}[{j}]", allowed)
        if block is not None:
            blocks.append(block)
    return blocks


def _part(part: object, p: str, allowed: tuple[str, ...]) -> dict | None:
    if not isinstance(part, dict):
        raise ChatRequestError("a content part must be an object", p)
    kind = part.get("type")
    if kind in ("text", "refusal") and kind in allowed:
        text = part.get(kind)
        if not isinstance(text, str):
            raise ChatRequestError(f"a {kind} part needs a string {kind}", f"{p}.{kind}")
        if not text.strip():
            return None
        block: dict[str, Any] = {"type": "text", "text": text}
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        return block
    if kind == "image_url" and kind in allowed:
        return _image(part.get("image_url"), f"{p}.image_url")
    if kind == "file" and kind in allowed:
        return _document(part.get("file"), f"{p}.file")
    if kind in ("input_audio", "audio"):
        raise ChatRequestError("audio input is not supported for this model", f"{p}.type")
    raise ChatRequestError(f"content part type {kind!r} is not supported here", f"{p}.type")


def _image(value: object, p: str) -> dict:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ChatRequestError("image_url needs a url", f"{p}.url")
    if url.startswith("data:"):
        media, data = _data_url(url, f"{p}.url")
        media = "image/jpeg" if media == "image/jpg" else media
        if media not in _IMAGE_TYPES:
            raise ChatRequestError(
                f"image type {media!r} is not supported; use JPEG, PNG, GIF or WebP", f"{p}.url"
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ChatRequestError("image_url.url must be an http(s) URL or a base64 data URL", f"{p}.url")


def _document(value: object, p: str) -> dict:
    if not isinstance(value, dict):
        raise ChatRequestError("a file part needs a file object", p)
    data = value.get("file_data")
    if not isinstance(data, str) or not data:
        if value.get("file_id") is not None:
            raise ChatRequestError(
                "file_id references are not supported; send the file inline as file_data", f"{p}.file_id"
            )
        raise ChatRequestError("a file part needs file_data", f"{p}.file_data")
    media, payload = (
        _data_url(data, f"{p}.file_data") if data.startswith("data:") else ("application/pdf", data)
    )
    if media == "application/pdf":
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media, "data": payload},
        }
    elif media == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ChatRequestError("file_data is not base64 UTF-8 text", f"{p}.file_data") from exc
        block = {"type": "document", "source": {"type": "text", "media_type": media, "data": text}}
    else:
        raise ChatRequestError(
            f"file type {media!r} is not supported; use PDF or plain text", f"{p}.file_data"
        )
    filename = value.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _data_url(url: str, p: str) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    params = header.split(";")
    if not sep or "base64" not in params[1:] or not data:
        raise ChatRequestError("data URLs must be base64: data:<media type>;base64,<data>", p)
    return params[0].strip().lower(), data
