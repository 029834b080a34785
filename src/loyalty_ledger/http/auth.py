"""API keys on every request: `Authorization: Bearer <key>` (or the console's cookie).

A missing or unknown (or revoked) key is 401; a key whose scope is below the
route's is 403. A key found in the database is trusted for KEY_TRUST_S without
asking again (a till's every request would otherwise cost a round trip), so a
revocation holds within that; an unknown key is never remembered. The key's name
(never the key) goes to the access log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loyalty_ledger.admin.api_keys import (
    AUTHENTICATE,
    ApiKey,
    Scope,
    authenticate,
    key_from,
    key_hash,
    may_be_a_key,
)
from loyalty_ledger.http.server import Server

CONSOLE_COOKIE = "loyalty_console_key"
KEY_TRUST_S = 1.0
KEYS_REMEMBERED_MAX = 10_000  # a flood of distinct keys cannot grow the memory without end

_bearer = HTTPBearer(auto_error=False, description="an API key: `loyalty api-keys create`")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def key_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    """The live key the request carries; 401 without one (blocking: from a thread)."""
    secret = _secret(request, credentials)
    return _live(request, _remembered(secret) or _known(server_of(request), secret))


async def key_of_async(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> ApiKey:
    """`key_of` on the event loop: a remembered key costs no thread and no round trip."""
    secret = _secret(request, credentials)
    key = _remembered(secret)
    if key is None and may_be_a_key(secret):
        async with server_of(request).areading() as conn:
            row = await (await conn.execute(AUTHENTICATE, (key_hash(secret),))).fetchone()
        key = _remember(secret, key_from(row))
    return _live(request, key)


def _secret(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    secret = credentials.credentials if credentials else request.cookies.get(CONSOLE_COOKIE)
    if not secret:
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return secret


def _live(request: Request, key: ApiKey | None) -> ApiKey:
    if key is None:
        raise HTTPException(401, "unknown or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    request.state.key_name = key.name
    return key


_trusted: dict[bytes, tuple[ApiKey, float]] = {}  # key hash -> key, when the database said so
_trusted_lock = threading.Lock()


def _remembered(secret: str) -> ApiKey | None:
    """The key `secret` is, if the database said it was live less than KEY_TRUST_S ago."""
    found = _trusted.get(key_hash(secret))
    if found is not None and time.monotonic() - found[1] < KEY_TRUST_S:
        return found[0]
    return None


def _known(server: Server, secret: str) -> ApiKey | None:
    """The live key `secret` is, asked of the database (and remembered)."""
    with server.reading() as conn:
        return _remember(secret, authenticate(conn, secret))


def _remember(secret: str, key: ApiKey | None) -> ApiKey | None:
    """Trust `key`, just found live, for KEY_TRUST_S; forget `secret` if it is not."""
    digest = key_hash(secret)
    now = time.monotonic()
    with _trusted_lock:
        if key is None:
            _trusted.pop(digest, None)
            return None
        if len(_trusted) >= KEYS_REMEMBERED_MAX:
            _trusted.clear()
        _trusted[digest] = (key, now)
    return key


def require(needed: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the request's key, which must allow `needed` (else 403)."""

    async def dependency(request: Request, credentials: Bearer) -> ApiKey:
        key = await key_of_async(request, credentials)
        if not key.scope.allows(needed):
            raise HTTPException(
                403, f"key {key.name!r} has scope {key.scope.value}; this needs {needed.value}"
            )
        return key

    return dependency


# The keys routes take, by the scope they need.
Reader = Annotated[ApiKey, Depends(require(Scope.read))]
Poster = Annotated[ApiKey, Depends(require(Scope.pos))]
Supporter = Annotated[ApiKey, Depends(require(Scope.support))]
Admin = Annotated[ApiKey, Depends(require(Scope.admin))]
