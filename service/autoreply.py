"""Inbound auto-replies and opt-outs: which rule answers, with what, and when not to.

Pure decisions, no I/O. The store gathers the facts about one inbound message inside
the transaction that stores it (the rules, whether the sender opted out, how often we
replied lately) and asks `decide` what to do, so that the message, the suppression
change and the reply commit together: a provider's retry of a callback can never
produce a second reply, and a crash can never lose the one that was decided.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from service import bounds, linear_regex
from service.errors import SettingsError, ValidationFailed
from service.model import AutoReplyRule, InboundDecision, InboundFacts, InboundSms, NewMessage
from service.phone import to_e164
from service.reconcile import recipient_key
from service.segments import segment
from service.validation import json_object

KINDS = ("keyword", "regex", "default")
# The words carriers and aggregators treat as opt-out and opt-in (CTIA, Twilio).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP"})
PLACEHOLDERS = frozenset({"from", "to", "text", "keyword"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NUMBER = re.compile(r"\+?[0-9]{3,20}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_FIELDS = {"name", "position", "kind", "pattern", "reply", "account", "number", "active"}
_TRIM = ".!?,;:'\" \t\r\n"


@dataclass(frozen=True, slots=True)
class Policy:
    max_per_sender: int
    """Replies one sender may get per window, opt-out confirmations included."""
    window: float
    stop_reply: str
    start_reply: str
    own_numbers: frozenset[str] = frozenset()
    """recipient_key() of numbers that are ours beyond the accounts' sender IDs."""
    default_region: str = ""


# -- rules ------------------------------------------------------------------------


def first_word(text: str) -> str:
    words = text.split(maxsplit=1)
    return words[0].strip(_TRIM).casefold() if words else ""


def matches(rule: AutoReplyRule, account: str, inbound: InboundSms) -> bool:
    if not rule.active or (rule.account and rule.account != account):
        return False
    if rule.number and recipient_key(rule.number) != recipient_key(inbound.recipient):
        return False
    if rule.kind == "keyword":
        return first_word(inbound.text) == rule.pattern.casefold()
    if rule.kind == "regex":
        try:
            return linear_regex.compile(rule.pattern).search(inbound.text)
        except linear_regex.InvalidPattern:
            # Stored before rules were checked against RE2: it never answers, the
            # API refuses it on its next change.
            return False
    return True


def render(template: str, inbound: InboundSms) -> str:
    values = {
        "from": inbound.sender,
        "to": inbound.recipient,
        "text": inbound.text,
        "keyword": first_word(inbound.text),
    }
    # Only the four names are replaced: str.format would let a template reach into
    # attributes ("{text.__class__}") and choke on ordinary braces.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _keyword_of(text: str, words: frozenset[str]) -> str:
    """The opt word when the whole message is one (`Stop.`), as carriers read them:
    a message that merely starts with "stop" ("stop by at 5") is not an opt-out."""
    word = text.strip(_TRIM).upper()
    return word if word in words else ""


# -- the decision -----------------------------------------------------------------


def decide(
    facts: InboundFacts,
    account: str,
    inbound: InboundSms,
    policy: Policy,
    *,
    max_chars: int,
    fallback_sender: str,
    inline: bool,
) -> InboundDecision:
    """What to do about one new inbound message.

    `max_chars` is the provider's maximum text length; `fallback_sender` sends when
    the provider did not say which of our numbers received the message; `inline`
    says the provider carries a reply in its callback's answer (Twilio's TwiML).
    """
    number = recipient_key(inbound.sender)
    if number in policy.own_numbers or number in facts.own_numbers:
        return InboundDecision(note="own_number")
    if facts.echoes_auto_reply:
        return InboundDecision(note="auto_reply_loop")
    stop = _keyword_of(inbound.text, OPT_OUT)
    start = "" if stop else _keyword_of(inbound.text, OPT_IN)
    suppress: bool | None = None
    text = ""
    rule = ""
    if stop:
        if facts.suppressed:
            return InboundDecision(note="already_opted_out")
        suppress, text, rule = True, policy.stop_reply, "opt-out"
    elif start and facts.suppressed:
        suppress, text, rule = False, policy.start_reply, "opt-in"
    elif facts.suppressed:
        return InboundDecision(note="opted_out")
    else:
        chosen = next((r for r in facts.rules if matches(r, account, inbound)), None)
        if chosen is None:
            return InboundDecision(note="no_rule")
        text, rule = render(chosen.reply, inbound), chosen.name
    decision = InboundDecision(suppress=suppress, rule=rule)
    if not text.strip():
        return replace(decision, note="empty_reply")
    if facts.recent_replies >= policy.max_per_sender:
        return replace(decision, note="rate_limited")
    try:
        to = to_e164(inbound.sender, policy.default_region)
    except ValidationFailed:
        return replace(decision, note="sender_not_a_number")
    text = text[:max_chars]
    segmentation = segment(text)
    reply = NewMessage(
        id=uuid.uuid4().hex,
        account=account,
        to=to,
        text=text,
        # Out through the number that received it, which the sender knows us by.
        sender=inbound.recipient if _NUMBER.fullmatch(inbound.recipient) else fallback_sender,
        encoding=segmentation.encoding,
        segments=segmentation.segments,
    )
    return replace(decision, reply=reply, inline=inline)


# -- rules as the API and the file give them -------------------------------------


def rule_from_body(body: Any, existing: AutoReplyRule | None = None) -> AutoReplyRule:
    """A validated rule; with `existing`, the fields given change it (PATCH)."""
    body = json_object(body, _FIELDS)
    base = existing or AutoReplyRule(name="", position=100, kind="keyword", pattern="", reply="")
    values: dict[str, Any] = {}
    for key in ("name", "kind", "pattern", "reply", "account", "number"):
        if key in body:
            if not isinstance(body[key], str):
                raise ValidationFailed(f"{key} must be text", field=key)
            values[key] = body[key].strip() if key != "reply" else body[key]
    for key, kind in (("position", int), ("active", bool)):
        if key in body:
            value = body[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValidationFailed(f"{key} must be {kind.__name__}", field=key)
            values[key] = value
    rule = replace(base, **values)
    _check(rule)
    return rule


def _check(rule: AutoReplyRule) -> None:
    if not _NAME.fullmatch(rule.name):
        raise ValidationFailed("name must be 1-64 letters, digits, '_', '.' or '-'", field="name")
    if rule.kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if len(rule.pattern) > bounds.RULE_PATTERN or len(rule.account) > bounds.ACCOUNT_NAME:
        field = "pattern" if len(rule.pattern) > bounds.RULE_PATTERN else "account"
        raise ValidationFailed(f"{field} is too long", field=field)
    if not 0 <= rule.position <= 1_000_000:
        raise ValidationFailed("position must be from 0 to 1000000", field="position")
    if rule.kind == "keyword" and (not rule.pattern or len(rule.pattern.split()) != 1):
        raise ValidationFailed("a keyword rule's pattern is one word", field="pattern")
    if rule.kind == "regex":
        if not rule.pattern or len(rule.pattern) > 200:
            raise ValidationFailed(
                "a regex rule needs a pattern of 1-200 characters", field="pattern"
            )
        try:
            linear_regex.compile(rule.pattern)
        except linear_regex.InvalidPattern as exc:
            raise ValidationFailed(
                f"pattern is not a regex smsgw can match in linear time (RE2 syntax: no "
                f"backreferences or lookaround): {exc}",
                field="pattern",
            ) from exc
    if rule.kind == "default" and rule.pattern:
        raise ValidationFailed("a default rule has no pattern", field="pattern")
    if rule.kind == "keyword" and rule.pattern.upper() in OPT_OUT | OPT_IN:
        raise ValidationFailed(
            f"{rule.pattern!r} is an opt-out or opt-in word, answered by smsgw itself",
            field="pattern",
        )
    if not rule.reply.strip() or len(rule.reply) > 1000:
        raise ValidationFailed("reply must be 1-1000 characters", field="reply")
    unknown = {m.group(1) for m in _PLACEHOLDER.finditer(rule.reply)} - PLACEHOLDERS
    if unknown:
        raise ValidationFailed(
            f"reply uses {{{sorted(unknown)[0]}}}; templates know {{from}}, {{to}}, "
            "{text} and {keyword}",
            field="reply",
        )
    if rule.number and not _NUMBER.fullmatch(rule.number):
        raise ValidationFailed(
            "number must be the receiving number's digits, optionally after '+'",
            field="number",
        )


def rule_view(rule: AutoReplyRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "position": rule.position,
        "kind": rule.kind,
        "pattern": rule.pattern,
        "reply": rule.reply,
        "account": rule.account or None,
        "number": rule.number or None,
        "active": rule.active,
    }


def declared_rules(path: Path) -> list[AutoReplyRule]:
    """The [[rule]] tables of an auto-reply file, validated like API bodies."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"auto-reply file {path}: {exc}") from exc
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise SettingsError(f"auto-reply file {path}: 'rule' must be an array of tables")
    rules = []
    for index, table in enumerate(tables):
        try:
            rules.append(rule_from_body(table))
        except ValidationFailed as exc:
            raise SettingsError(
                f"auto-reply file {path}: rule {index + 1}: {exc.field}: {exc.message}"
            ) from exc
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SettingsError(f"auto-reply file {path}: rule {duplicated[0]!r} is declared twice")
    return rules


def own_number_keys(numbers: Iterable[str]) -> frozenset[str]:
    return frozenset(key for key in map(recipient_key, numbers) if key)
