"""Templates, static assets and the request helpers every console page shares."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.errors import SmsgwError
from service.model import Status
from service.web.session import CSRF_FIELD, PREFIX, Session

_HERE = Path(__file__).resolve().parent.parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"


def _asset_version() -> str:
    """Changes whenever a static file does, so browsers never run stale JS against new
    pages, while the files themselves can be cached."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _when(iso: str) -> str:
    """ISO-8601 UTC as people read it; the exact value stays in <time datetime>."""
    return iso[:19].replace("T", " ") if iso else ""


def _status_class(status: str) -> str:
    return f"st st-{status}" if status in Status.__members__.values() else "st"


ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["status_class"] = _status_class
ENV.globals.update(
    prefix=PREFIX,
    csrf_field=CSRF_FIELD,
    statuses=[s.value for s in Status],
    asset_version=_asset_version(),
)


def session_of(request: Request) -> Session:
    session = request.scope["state"]["console_session"]
    assert isinstance(session, Session)
    return session


def form_of(request: Request) -> dict[str, str]:
    """The POST form ConsoleAuth parsed and checked; the last value of a repeated name."""
    return dict(request.scope["state"].get("console_form", []))


def render_bytes(template: str, session: Session | None, **context: Any) -> bytes:
    return ENV.get_template(template).render(session=session, **context).encode()


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    session = request.scope.get("state", {}).get("console_session")
    return HTMLResponse(render_bytes(template, session, **context), status_code=status)


def client_error(exc: SmsgwError) -> bool:
    """True for the errors a page answers by showing its form again (4xx); a store that
    cannot commit (503) is not the operator's input and goes to the error handler."""
    return exc.status < 500


def forbidden_page(session: Session) -> bytes:
    return render_bytes(
        "error.html",
        session,
        title="Forbidden",
        message="The form was stale or came from elsewhere. Reload the page and try again.",
    )
