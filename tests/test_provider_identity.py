"""What each provider's handler declares about its provider, side by side.

Every handler declares the same things (its host, which credentials it takes and
which of them are secret, its limits, how it reports), so one table per fact keeps
the providers comparable at a glance.
"""

from __future__ import annotations

import pytest

from handlers.base import ProviderHandler
from handlers.clickatell import ClickatellHandler
from handlers.connectel import ConnectelHandler
from handlers.infobip import InfobipHandler
from handlers.intellisoftware import IntelliSoftwareHandler
from handlers.routemobile import RouteMobileHandler
from handlers.sms1609 import Sms1609Handler
from handlers.twilio import TwilioHandler

HANDLERS: list[ProviderHandler] = [
    ConnectelHandler(),
    ClickatellHandler(),
    InfobipHandler(),
    IntelliSoftwareHandler(),
    RouteMobileHandler(),
    Sms1609Handler(),
    TwilioHandler(),
]
NAMES = [
    "connectel",
    "clickatell",
    "infobip",
    "intellisoftware",
    "routemobile",
    "sms1609",
    "twilio",
]

HOSTS = {
    "connectel": "https://smsapi.connectel.se",
    "clickatell": "https://platform.clickatell.com",
    "infobip": "https://api.infobip.com",
    "intellisoftware": "https://www.intellisoftware.co.uk",
    "routemobile": "https://api.rmlconnect.net",
    "sms1609": "http://217.19.227.48",
    "twilio": "https://api.twilio.com",
}
USER_AND_PASSWORD = (("username", "password"), ("password",))
CREDENTIALS = {  # the credential fields, then those of them that are secret
    "connectel": (("token",), ("token",)),
    "clickatell": (("api_key",), ("api_key",)),
    "infobip": (("api_key",), ("api_key",)),
    "intellisoftware": USER_AND_PASSWORD,
    "routemobile": USER_AND_PASSWORD,
    "sms1609": USER_AND_PASSWORD,
    "twilio": (("account_sid", "auth_token"), ("auth_token",)),
}
LIMITS = {  # messages per request, characters per text
    "connectel": (1000, 1600),
    "clickatell": (200, 5355),
    "infobip": (1000, 1600),
    "intellisoftware": (100, 1530),
    "routemobile": (100, 1000),
    "sms1609": (1, 459),
    "twilio": (1, 1600),
}
FLAGS = {  # shares request IDs across messages, pushes reports, has a native test mode
    "connectel": (False, True, False),
    "clickatell": (False, True, False),
    "infobip": (False, True, False),
    "intellisoftware": (True, True, False),
    "routemobile": (False, True, False),
    "sms1609": (False, False, True),
    "twilio": (False, True, False),
}


@pytest.mark.parametrize(("name", "handler"), list(zip(NAMES, HANDLERS, strict=True)), ids=NAMES)
def test_each_handler_declares_its_providers_host_credentials_limits_and_reporting(
    name: str, handler: ProviderHandler
) -> None:
    assert handler.name == name
    assert handler.public_base_url == HOSTS[name]
    assert (handler.credential_fields, handler.secret_fields) == CREDENTIALS[name]
    assert (handler.max_batch, handler.max_text_chars) == LIMITS[name]
    flags = (handler.shares_request_ids, handler.pushes_reports, handler.native_test_mode)
    assert all(isinstance(flag, bool) for flag in flags)
    assert flags == FLAGS[name]
