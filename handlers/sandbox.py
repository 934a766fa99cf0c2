"""The sandbox provider: smsgw's own local stand-in for a real one.

Its server side is `service.sandbox`, mounted in the app at /sandbox; this module is
the client side, a handler like any other, so the sandbox loop exercises the real
dispatcher, callbacks and reconciliation over real HTTP.

Wire format: POST {base}/sandbox/api/messages with JSON
`{"from", "text", "to": [digits...], "callback_url"}`, answered with
`{"messages": [{"to", "id"} | {"to", "error": {"code", "text"}}]}`; reports are JSON
`{"id", "to", "status", "error_code"}` posted to the callback URL.
"""

from __future__ import annotations

from typing import ClassVar

from handlers import wire
from handlers.base import CallbackRequest, Credential, ProviderHandler, WireRequest, WireResponse
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status

STATUSES = {
    "ENROUTE": Status.ENROUTE,
    "DELIVERED": Status.DELIVERED,
    "UNDELIVERED": Status.UNDELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTED": Status.REJECTED,
}


class SandboxHandler(ProviderHandler):
    name = "sandbox"
    display_name = "Sandbox (local)"
    docs_url = ""
    public_base_url = ""
    credentials: ClassVar[tuple[Credential, ...]] = ()
    example_account = ""
    max_batch = 100
    max_text_chars = 1600

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        return WireRequest(
            "POST",
            f"{batch.base_url}/sandbox/api/messages",
            json={
                "from": first.sender,
                "text": first.text,
                "to": [m.to.lstrip("+") for m in batch.messages],
                "callback_url": batch.dlr_url,
            },
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        body = response.json()
        server = wire.server_failure(response.status_code)
        if server is not None:
            return [
                RecipientResult(server, error_code=str(response.status_code))
                for _ in batch.messages
            ]
        answers = body.get("messages") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(answers, list):
            return [
                RecipientResult(
                    Outcome.REFUSED,
                    error_code=str(response.status_code),
                    error_text="unreadable sandbox answer",
                )
                for _ in batch.messages
            ]
        by_number = {str(a.get("to")): a for a in answers if isinstance(a, dict)}
        return [self._result(by_number.get(m.to.lstrip("+"))) for m in batch.messages]

    @staticmethod
    def _result(answer: dict[str, object] | None) -> RecipientResult:
        if answer is None:
            return RecipientResult(Outcome.REFUSED, error_text="missing from the answer")
        error = answer.get("error")
        if isinstance(error, dict):
            return RecipientResult(
                Outcome.REFUSED,
                error_code=str(error.get("code", "")),
                error_text=str(error.get("text", "")),
            )
        return RecipientResult(Outcome.ACCEPTED, request_ids=(str(answer.get("id", "")),))

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        fields = callback.fields()
        request_id, status = fields.get("id"), fields.get("status")
        # A JSON body may carry a list or an object as status, which no table lookup takes.
        known = STATUSES.get(status) if isinstance(status, str) else None
        if not isinstance(request_id, str) or not request_id or known is None:
            raise CallbackInvalid("a sandbox report needs id and a known status")
        return [
            Report(
                request_id,
                known,
                str(fields.get("to", "")),
                str(fields.get("error_code", "")),
                str(status),
            )
        ]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        fields = callback.fields()
        sender, text = fields.get("from"), fields.get("text")
        if not isinstance(sender, str) or not isinstance(text, str) or not sender:
            raise CallbackInvalid("a sandbox inbound message needs from and text")
        return [
            model.InboundSms(sender, str(fields.get("to", "")), text, str(fields.get("id", "")))
        ]

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        return model.Balance(0.0)
