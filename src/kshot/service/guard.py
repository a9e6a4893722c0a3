"""What every request passes before a route sees it: the token, then the body's size, nesting and text.

An ASGI middleware, so that an anonymous client learns nothing from validation (401 comes before
any parsing) and no route ever parses a body that is too large, too deep, or holds text that cannot
be stored (lone surrogates such as ``"\\udcff"``, NaN, Infinity).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from .settings import ServiceSettings

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Strings (with their escapes) stand for nothing when nesting is measured.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
MAX_LOC_PARTS = 8


class BodyRejected(Exception):
    def __init__(self, status: int, message: str, loc: list | None = None):
        super().__init__(message)
        self.status, self.message, self.loc = status, message, loc


def json_depth(body: bytes) -> int:
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub(b'""', body)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number; give a finite number")


def first_unencodable(value: Any, loc: list) -> list | None:
    """The location of the first string (key or value) that is not valid Unicode text, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return loc
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = loc + [key if len(key) <= 64 else key[:64] + "…"]
            if first_unencodable(key, where) is not None:
                return [*loc, "<key>"]
            found = first_unencodable(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = first_unencodable(item, loc + [i])
            if found is not None:
                return found
    return None


def check_json_body(body: bytes, max_depth: int) -> None:
    if json_depth(body) > max_depth:
        raise BodyRejected(422, f"The JSON body nests deeper than {max_depth} levels.", ["body"])
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as err:
        message = str(err) if isinstance(err, ValueError) else "too deep"
        raise BodyRejected(422, f"The body is not valid JSON: {message[:200]}.", ["body"]) from None
    where = first_unencodable(value, ["body"])
    if where is not None:
        raise BodyRejected(
            422,
            "The text holds a lone surrogate or another character that is not Unicode text.",
            [safe_text(str(p)) for p in where[:MAX_LOC_PARTS]],
        )


def safe_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced: always a valid response."""
    return text.encode("utf-8", "replace").decode("utf-8")


def authorized(settings: ServiceSettings, headers: dict[bytes, bytes]) -> bool:
    expected = settings.token_value()
    if expected is None:  # then the service only ever listens on loopback (ServiceSettings.check_bind)
        return True
    scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(given.strip().encode("latin-1"), expected.encode())


class RequestGuard:
    """ASGI middleware: authenticate every request that changes something, then bound its body."""

    def __init__(self, app, settings: ServiceSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not authorized(self.settings, headers):
            await _reply(
                send,
                401,
                {"detail": "Missing or wrong bearer token: send 'Authorization: Bearer <KSHOT_TOKEN>'."},
                [(b"www-authenticate", b"Bearer")],
            )
            return
        try:
            body = await self._read_body(headers, receive)
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if body and (kind == b"application/json" or kind.endswith(b"+json") or not kind):
                check_json_body(body, self.settings.max_json_depth)
        except BodyRejected as err:
            detail: Any = err.message
            if err.loc is not None:
                detail = [{"loc": err.loc, "msg": err.message, "type": "value_error"}]
            await _reply(send, err.status, {"detail": detail})
            return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, headers: dict[bytes, bytes], receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            raise BodyRejected(413, f"The body is larger than {limit} bytes.")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyRejected(400, "The client went away before sending the body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyRejected(413, f"The body is larger than {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


async def _reply(send, status: int, payload: dict, headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
