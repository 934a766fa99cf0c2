"""Provider handlers by name. Each module speaks one provider's wire format."""

from __future__ import annotations

from handlers.base import ProviderHandler
from handlers.connectel import ConnectelHandler
from handlers.sandbox import SandboxHandler

HANDLERS: dict[str, ProviderHandler] = {
    handler.name: handler for handler in (SandboxHandler(), ConnectelHandler())
}


def handler_for(provider: str) -> ProviderHandler:
    return HANDLERS[provider]
