"""FastPath framing (spec: shared/spec/fastpath-ipc.md), pure.

    | length: u32 big endian | mac: 32 bytes | payload: length - 32 bytes |

`length` counts mac + payload and must be in 33..65536; `mac` is the raw
HMAC-SHA256 of the payload bytes as sent; the payload is one UTF-8 JSON
object. MACs are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from titan_actors.domain.money import json_default

__all__ = [
    "MAC_SIZE",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "Frame",
    "FrameError",
    "FrameReader",
    "decode_payload",
    "duplicate_key",
    "encode_frame",
    "encode_message",
    "mac_ok",
    "sign",
]

MAC_SIZE = 32
MIN_LENGTH = MAC_SIZE + 1
MAX_LENGTH = 65536
_LEN = struct.Struct(">I")


class FrameError(ValueError):
    """The byte stream is not FastPath frames; the connection must close."""


@dataclass(frozen=True, slots=True)
class Frame:
    mac: bytes
    payload: bytes


def sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def mac_ok(secret: bytes, frame: Frame) -> bool:
    return hmac.compare_digest(sign(secret, frame.payload), frame.mac)


def encode_frame(secret: bytes, payload: bytes) -> bytes:
    if not 1 <= len(payload) <= MAX_LENGTH - MAC_SIZE:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return _LEN.pack(MAC_SIZE + len(payload)) + sign(secret, payload) + payload


def encode_message(secret: bytes, message: dict[str, Any]) -> bytes:
    return encode_frame(secret, orjson.dumps(message, default=json_default))


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The JSON object of a payload; FrameError when it is not one."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:  # also bad UTF-8, NaN, Infinity
        raise FrameError(f"payload is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError("payload is not a JSON object")
    return value


def duplicate_key(payload: bytes, value: dict[str, Any]) -> str | None:
    """The first key that appears twice in one object of `payload`, else None.

    orjson keeps the last of two equal keys silently; a sender that wrote two
    quantities must hear that, not have one chosen for it. The strict parse
    runs only when a key's quoted text occurs twice or the payload has escapes
    (a key may be spelt with them), so a clean frame costs a few `count`s.
    """
    if b"\\" not in payload and not _may_repeat(payload, value):
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(payload, object_pairs_hook=pairs)
    return found[0] if found else None


def _may_repeat(payload: bytes, value: Any) -> bool:
    if isinstance(value, dict):
        for key, inner in value.items():
            if payload.count(b'"%s"' % key.encode()) > 1 or _may_repeat(payload, inner):
                return True
    elif isinstance(value, list):
        return any(_may_repeat(payload, inner) for inner in value)
    return False


class FrameReader:
    """Incremental reader: `feed(bytes)` then iterate whole frames.

    Raises FrameError on a length out of range; nothing after it can be framed.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> Iterator[Frame]:
        buf = self._buf
        try:
            while len(buf) - self._pos >= _LEN.size:
                (length,) = _LEN.unpack_from(buf, self._pos)
                if not MIN_LENGTH <= length <= MAX_LENGTH:
                    raise FrameError(f"frame length {length} is outside {MIN_LENGTH}..{MAX_LENGTH}")
                end = self._pos + _LEN.size + length
                if len(buf) < end:
                    return
                start = self._pos + _LEN.size
                frame = Frame(bytes(buf[start : start + MAC_SIZE]), bytes(buf[start + MAC_SIZE : end]))
                self._pos = end
                yield frame
        finally:
            if self._pos:
                del buf[: self._pos]
                self._pos = 0

    @property
    def pending(self) -> int:
        return len(self._buf)
