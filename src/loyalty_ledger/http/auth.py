"""API keys on every request: `Authorization: Bearer <key>` (or the console's cookie).

A missing or unknown (or revoked) key is 401; a key whose scope is below the
route's is 403. The key is checked against the database on each request, so a
revocation holds at once; the key's name (never the key) goes to the access log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loyalty_ledger.admin.api_keys import ApiKey, Scope, authenticate
from loyalty_ledger.http.server import Server

CONSOLE_COOKIE = "loyalty_console_key"

_bearer = HTTPBearer(auto_error=False, description="an API key: `loyalty api-keys create`")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def key_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    """The live key the request carries; 401 without one."""
    secret = credentials.credentials if credentials else request.cookies.get(CONSOLE_COOKIE)
    if not secret:
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    with server_of(request).reading() as conn:
        key = authenticate(conn, secret)
    if key is None:
        raise HTTPException(401, "unknown or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    request.state.key_name = key.name
    return key


def require(needed: Scope) -> Callable[..., ApiKey]:
    """A dependency: the request's key, which must allow `needed` (else 403)."""

    def dependency(request: Request, credentials: Bearer) -> ApiKey:
        key = key_of(request, credentials)
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
