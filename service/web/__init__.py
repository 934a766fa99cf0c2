"""The web console: server-rendered pages under /console, signed in with an API token.

This module only mounts the console's route modules behind its sign-in middleware,
as service.app mounts the API's.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.ratelimit import FailedAuthentications
from service.settings import Settings
from service.web import gateways, pages, send
from service.web.render import STATIC, forbidden_page
from service.web.session import PREFIX, ConsoleAuth, SessionSigner
from service.web.signin import SignIn


def console(settings: Settings, failures: FailedAuthentications) -> Mount:
    signer = SessionSigner(settings.api_tokens, settings.web_session_ttl)
    signin = SignIn(signer, secure=settings.base_url.startswith("https://"), failures=failures)
    return Mount(
        PREFIX,
        routes=[
            Route("/", pages.general),
            Route("/login", signin.login, methods=["GET", "POST"]),
            Route("/logout", signin.logout, methods=["POST"]),
            Route("/history", pages.history),
            Route("/messages/{id}", pages.message),
            Route("/send", send.send, methods=["GET", "POST"]),
            Route("/inbound", pages.inbound),
            Route("/suppressions/remove", pages.remove_suppression, methods=["POST"]),
            Route("/gateways", gateways.gateways),
            Route("/gateways/new", gateways.new_gateway),
            Route("/gateways/new", gateways.create_gateway, methods=["POST"]),
            Route("/gateways/{name}", gateways.edit_gateway, methods=["GET", "POST"]),
            Route("/gateways/{name}/active", gateways.switch_gateway, methods=["POST"]),
            Route("/gateways/{name}/delete", gateways.delete_gateway, methods=["GET", "POST"]),
            Route("/gateways/{name}/balance", gateways.gateway_balance),
            Mount("/static", app=StaticFiles(directory=STATIC)),
        ],
        middleware=[Middleware(ConsoleAuth, signer=signer, forbidden=forbidden_page)],
    )
