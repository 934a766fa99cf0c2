"""Signing in with an API token and signing out."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.errors import TooManyRequests, Unauthorized
from service.ratelimit import API_AUTH, FailedAuthentications
from service.web.render import page, session_of
from service.web.session import (
    COOKIE,
    LOGIN,
    PREFIX,
    SessionSigner,
    end_session,
    live_session,
    safe_next,
    start_session,
)


class SignIn:
    def __init__(
        self, signer: SessionSigner, secure: bool, failures: FailedAuthentications
    ) -> None:
        self._signer = signer
        self._secure = secure
        self._failures = failures

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            next_page = safe_next(request.query_params.get("next", ""))
            if await live_session(self._signer, request.scope) is not None:
                return RedirectResponse(next_page, status_code=303)
            return page(request, "login.html", next_page=next_page, error="")
        # Read here, not by ConsoleAuth: there is no session, hence no CSRF token yet.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        next_page = safe_next(form.get("next", ""))
        token_id = self._signer.token_id(form.get("token", "").strip())
        if token_id is None:
            # Counted with the API's failed tokens; past the limit the page says so.
            refusal = self._failures.refusal(
                request.client.host if request.client else "",
                API_AUTH,
                Unauthorized("That is not one of this gateway's API tokens."),
            )
            if isinstance(refusal, TooManyRequests):
                message = (
                    "Too many failed sign-ins from your address. "
                    f"Try again in {refusal.retry_after} seconds."
                )
            else:
                message = refusal.message
            # The token typed is never put back into the page.
            answer = page(
                request, "login.html", status=refusal.status, next_page=next_page, error=message
            )
            answer.headers.update(refusal.headers())
            return answer
        cookie = await start_session(self._signer, request.scope, token_id)
        response = RedirectResponse(next_page, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self._signer.ttl,
            path=PREFIX,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        # ConsoleAuth let this POST in: it carries a live session and its CSRF token.
        await end_session(request.scope, session_of(request))
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(
            COOKIE, path=PREFIX, secure=self._secure, httponly=True, samesite="strict"
        )
        return response
