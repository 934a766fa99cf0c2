"""Signing in with an API token and signing out."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.web.render import page
from service.web.session import COOKIE, LOGIN, PREFIX, SessionSigner, safe_next


class SignIn:
    def __init__(self, signer: SessionSigner, secure: bool) -> None:
        self._signer = signer
        self._secure = secure

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            next_page = safe_next(request.query_params.get("next", ""))
            if self._signer.read(request.cookies.get(COOKIE)) is not None:
                return RedirectResponse(next_page, status_code=303)
            return page(request, "login.html", next_page=next_page, error="")
        # Read here, not by ConsoleAuth: there is no session, hence no CSRF token yet.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        next_page = safe_next(form.get("next", ""))
        if not self._signer.token_ok(form.get("token", "").strip()):
            # The token typed is never put back into the page.
            return page(
                request,
                "login.html",
                status=401,
                next_page=next_page,
                error="That is not one of this gateway's API tokens.",
            )
        cookie, _ = self._signer.issue()
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
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(
            COOKIE, path=PREFIX, secure=self._secure, httponly=True, samesite="strict"
        )
        return response
