"""Provider handlers by name. Each module speaks one provider's wire format."""

from __future__ import annotations

from handlers.base import ProviderHandler
from handlers.clickatell import ClickatellHandler
from handlers.connectel import ConnectelHandler
from handlers.infobip import InfobipHandler
from handlers.intellisoftware import IntelliSoftwareHandler
from handlers.routemobile import RouteMobileHandler
from handlers.sandbox import SandboxHandler
from handlers.sms1609 import Sms1609Handler
from handlers.twilio import TwilioHandler

HANDLERS: dict[str, ProviderHandler] = {
    handler.name: handler
    for handler in (
        SandboxHandler(),
        ConnectelHandler(),
        RouteMobileHandler(),
        IntelliSoftwareHandler(),
        Sms1609Handler(),
        InfobipHandler(),
        ClickatellHandler(),
        TwilioHandler(),
    )
}


def handler_for(provider: str) -> ProviderHandler:
    return HANDLERS[provider]
