"""``/v1/session``: the gallery signs in with a key once and then holds a session cookie, so
the page never keeps a key (not in its storage, not in a URL)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from reelvault_common.contracts.tenancy import MAX_KEY_CHARS

from reelvault_gateway.deps import ContextDep, ReadPrincipal
from reelvault_gateway.errors import error_responses
from reelvault_gateway.sessions import cleared_cookie, session_cookie

router = APIRouter(prefix="/v1/session", tags=["session"])

NO_STORE = {"Cache-Control": "no-store"}


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS, description="An API key (rvk_...).")


class SessionInfo(BaseModel):
    org: str = Field(description="The organization the key belongs to.")
    scopes: list[str]
    key_id: str = Field(description="The public id of the key (not a secret).")
    expires_at: datetime | None = Field(description="When these credentials stop working.")
    via: Literal["key", "session"] = Field(
        description="`session`: the session cookie; `key`: an Authorization header."
    )


@router.post(
    "",
    status_code=204,
    response_class=Response,
    summary="Sign in with an API key (sets the session cookie)",
    responses={
        204: {"description": "Signed in: `Set-Cookie` holds the session (HttpOnly)."},
        **error_responses(401, 413, 422, 502, 503),
    },
)
async def sign_in(body: SignIn, context: ContextDep) -> Response:
    """The key is checked like an `Authorization: Bearer` key; the cookie names the key (by
    its public id, never the secret) and lasts at most `REELVAULT_SESSION_TTL_S`. Revoking
    the key ends the session. Changes made with the cookie need the gateway's own `Origin`
    (what the browser sends from the gallery's pages)."""
    session = await context.auth.sign_in(body.key)
    cookie = session_cookie(
        session.cookie_value, session.max_age_s, secure=context.settings.secure_cookies
    )
    return Response(status_code=204, headers={**NO_STORE, "Set-Cookie": cookie})


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    summary="Sign out (clears the session cookie)",
    responses={204: {"description": "Signed out."}, **error_responses()},
)
async def sign_out(context: ContextDep) -> Response:
    cookie = cleared_cookie(secure=context.settings.secure_cookies)
    return Response(status_code=204, headers={**NO_STORE, "Set-Cookie": cookie})


@router.get(
    "",
    response_model=SessionInfo,
    summary="Who is signed in",
    responses=error_responses(401, 403, 502, 503),
)
async def who(principal: ReadPrincipal, response: Response) -> SessionInfo:
    response.headers.update(NO_STORE)
    return SessionInfo(
        org=principal.org,
        scopes=sorted(principal.scopes),
        key_id=principal.key_id,
        expires_at=principal.expires_at,
        via=principal.via,
    )
