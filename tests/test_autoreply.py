"""Auto-replies and opt-outs: which rule answers, and every way smsgw stays quiet.

The rules are specified on `decide` directly; the end-to-end tests then send real
inbound callbacks to a running smsgw and watch replies leave through the sandbox
(and, for Twilio, inside the TwiML answer).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from service.autoreply import (
    Policy,
    decide,
    declared_rules,
    first_word,
    matches,
    render,
    rule_from_body,
)
from service.errors import SettingsError, ValidationFailed
from service.model import AutoReplyRule, InboundFacts, InboundSms
from tests.conftest import Gateway, error_of, eventually, running_gateway

POLICY = Policy(
    max_per_sender=3, window=3600, stop_reply="Bye. START to return.", start_reply="Hi again."
)
US = "+46700000000"
THEM = "+46701234567"


def rule(
    name: str = "r", kind: str = "keyword", pattern: str = "info", **more: Any
) -> AutoReplyRule:
    return AutoReplyRule(
        name=name,
        position=more.pop("position", 100),
        kind=kind,
        pattern=pattern,
        reply=more.pop("reply", f"reply of {name}"),
        **more,
    )


def facts(*rules: AutoReplyRule, **more: Any) -> InboundFacts:
    base = InboundFacts(
        rules=rules,
        suppressed=False,
        own_numbers=frozenset(),
        recent_replies=0,
        echoes_auto_reply=False,
    )
    return replace(base, **more)


def sms(text: str, sender: str = THEM, recipient: str = US) -> InboundSms:
    return InboundSms(sender, recipient, text, provider_id="p1")


def decide_for(text: str, f: InboundFacts, *, sender: str = THEM, inline: bool = False) -> Any:
    return decide(
        f, "acc", sms(text, sender), POLICY, max_chars=1600, fallback_sender="smsgw", inline=inline
    )


# -- matching ------------------------------------------------------------------------


def test_the_first_word_is_read_without_case_or_punctuation() -> None:
    assert first_word("  Info, please") == "info"
    assert first_word("PRICE?") == "price"
    assert first_word("") == ""


def test_a_keyword_rule_matches_the_first_word_only_in_any_case() -> None:
    keyword = rule(pattern="Info")
    assert matches(keyword, "acc", sms("INFO please"))
    assert matches(keyword, "acc", sms("info"))
    assert not matches(keyword, "acc", sms("more info"))
    assert not matches(keyword, "acc", sms("information"))


def test_a_regex_rule_searches_the_whole_text() -> None:
    regex = rule(kind="regex", pattern=r"(?i)\border\s+\d+")
    assert matches(regex, "acc", sms("where is ORDER 1234?"))
    assert not matches(regex, "acc", sms("order soon"))


# A backtracking engine takes 2^n steps on this pattern when the text ends in a
# non-match; with RE2 it is one linear pass, so the test finishes at all.
CATASTROPHIC = "(a+)+$"


def test_a_catastrophic_pattern_is_matched_in_linear_time() -> None:
    regex = rule(kind="regex", pattern=CATASTROPHIC)
    assert matches(regex, "acc", sms("a" * 5000))
    assert not matches(regex, "acc", sms("a" * 5000 + "!"))


def test_a_stored_rule_that_re2_cannot_run_answers_nothing() -> None:
    # Rules stored before patterns were checked against RE2 may still hold one.
    assert not matches(rule(kind="regex", pattern=r"(a)\1"), "acc", sms("aa"))


def test_case_is_significant_unless_the_pattern_says_otherwise() -> None:
    assert not matches(rule(kind="regex", pattern="hours"), "acc", sms("HOURS?"))
    assert matches(rule(kind="regex", pattern="(?i)hours"), "acc", sms("HOURS?"))
    assert matches(rule(kind="regex", pattern="(?i)ÖPPET"), "acc", sms("öppet?"))


def test_a_default_rule_matches_anything_but_respects_its_scope() -> None:
    default = rule(kind="default", pattern="")
    assert matches(default, "acc", sms("whatever"))
    assert not matches(replace(default, active=False), "acc", sms("whatever"))
    assert not matches(replace(default, account="other"), "acc", sms("whatever"))
    assert matches(replace(default, account="acc"), "acc", sms("whatever"))
    assert matches(
        replace(default, number="46700000000"), "acc", sms("x", recipient="+46700000000")
    )
    assert not matches(replace(default, number="46700000099"), "acc", sms("x"))


def test_rules_are_tried_in_their_order_and_the_first_match_answers() -> None:
    first = rule("first", kind="default", pattern="", position=1, reply="first")
    second = rule("second", pattern="info", position=2, reply="second")
    # facts hold the rules already ordered, as the store reads them.
    assert decide_for("info", facts(first, second)).reply.text == "first"
    assert decide_for("info", facts(second, first)).reply.text == "second"


def test_templates_fill_the_four_names_and_leave_everything_else_alone() -> None:
    inbound = sms("Info now", sender="+46701234567", recipient="+46700000000")
    template = "{keyword}: to {from} from {to} re '{text}' {unknown} {text.__class__} {}"
    assert render(template, inbound) == (
        "info: to +46701234567 from +46700000000 re 'Info now' {unknown} {text.__class__} {}"
    )


# -- deciding ------------------------------------------------------------------------


def test_a_matching_rule_replies_to_the_sender_from_the_receiving_number() -> None:
    decision = decide_for("info", facts(rule(reply="Hello {from}")))
    reply = decision.reply
    assert (reply.to, reply.sender, reply.text, reply.account) == (THEM, US, f"Hello {THEM}", "acc")
    assert (reply.encoding, reply.segments, decision.rule, decision.inline) == (
        "GSM-7",
        1,
        "r",
        False,
    )


def test_without_a_receiving_number_the_reply_uses_the_fallback_sender() -> None:
    decision = decide(
        facts(rule()),
        "acc",
        sms("info", recipient=""),
        POLICY,
        max_chars=160,
        fallback_sender="Shop",
        inline=False,
    )
    assert decision.reply is not None and decision.reply.sender == "Shop"


def test_a_reply_longer_than_the_provider_takes_is_cut_to_fit() -> None:
    decision = decide(
        facts(rule(reply="x" * 1000)),
        "acc",
        sms("info"),
        POLICY,
        max_chars=160,
        fallback_sender="",
        inline=True,
    )
    assert decision.reply is not None
    assert len(decision.reply.text) == 160 and decision.inline


def test_no_rule_means_no_reply() -> None:
    decision = decide_for("hello", facts(rule(pattern="info")))
    assert (decision.reply, decision.note, decision.suppress) == (None, "no_rule", None)


def test_our_own_numbers_are_never_answered() -> None:
    mine = facts(rule(kind="default", pattern=""), own_numbers=frozenset({"46701234567"}))
    assert decide_for("info", mine).note == "own_number"
    configured = replace(POLICY, own_numbers=frozenset({"46701234567"}))
    decision = decide(
        facts(rule()),
        "acc",
        sms("info"),
        configured,
        max_chars=160,
        fallback_sender="",
        inline=False,
    )
    assert (decision.reply, decision.note) == (None, "own_number")


def test_a_message_that_is_one_of_our_auto_replies_is_never_answered() -> None:
    decision = decide_for("info", facts(rule(), echoes_auto_reply=True))
    assert (decision.reply, decision.note) == (None, "auto_reply_loop")


def test_a_sender_gets_at_most_the_policys_replies_per_window() -> None:
    assert decide_for("info", facts(rule(), recent_replies=2)).reply is not None
    limited = decide_for("info", facts(rule(), recent_replies=3))
    assert (limited.reply, limited.note, limited.rule) == (None, "rate_limited", "r")


@pytest.mark.parametrize(
    "word", ["STOP", "stop", "Stop.", " StopAll ", "UNSUBSCRIBE", "cancel", "End", "quit!"]
)
def test_each_opt_out_word_suppresses_the_sender_and_confirms(word: str) -> None:
    decision = decide_for(word, facts(rule(kind="default", pattern="")))
    assert decision.suppress is True and decision.rule == "opt-out"
    assert decision.reply.text == POLICY.stop_reply


def test_a_message_that_only_starts_with_stop_is_not_an_opt_out() -> None:
    decision = decide_for("stop by at five", facts(rule(kind="default", pattern="")))
    assert decision.suppress is None and decision.reply.text == "reply of r"


def test_a_second_stop_changes_nothing_and_sends_nothing() -> None:
    decision = decide_for("STOP", facts(suppressed=True))
    assert (decision.suppress, decision.reply, decision.note) == (None, None, "already_opted_out")


@pytest.mark.parametrize("word", ["START", "unstop"])
def test_start_lifts_the_suppression_and_confirms(word: str) -> None:
    decision = decide_for(word, facts(suppressed=True))
    assert decision.suppress is False and decision.reply.text == POLICY.start_reply


def test_start_from_a_subscribed_sender_is_an_ordinary_message() -> None:
    decision = decide_for("START", facts(rule(kind="default", pattern="", reply="welcome")))
    assert decision.suppress is None and decision.reply.text == "welcome"


def test_an_opted_out_sender_gets_no_rule_replies() -> None:
    decision = decide_for("info", facts(rule(), suppressed=True))
    assert (decision.reply, decision.note) == (None, "opted_out")


def test_an_opt_out_is_kept_even_when_its_confirmation_is_rate_limited() -> None:
    decision = decide_for("STOP", facts(recent_replies=99))
    assert (decision.suppress, decision.reply, decision.note) == (True, None, "rate_limited")


def test_a_sender_that_is_no_phone_number_cannot_be_answered() -> None:
    decision = decide_for("info", facts(rule()), sender="SHOPNAME")
    assert (decision.reply, decision.note) == (None, "sender_not_a_number")


# -- rules as given --------------------------------------------------------------------


def test_a_rule_body_becomes_a_rule_and_a_patch_changes_only_what_it_names() -> None:
    made = rule_from_body(
        {
            "name": "info",
            "kind": "keyword",
            "pattern": "INFO",
            "reply": "Open 9-5",
            "position": 5,
            "account": "sandbox",
        }
    )
    assert (made.name, made.kind, made.pattern, made.position, made.account, made.active) == (
        "info",
        "keyword",
        "INFO",
        5,
        "sandbox",
        True,
    )
    patched = rule_from_body({"active": False, "reply": "Open 8-4"}, made)
    assert (patched.active, patched.reply, patched.pattern) == (False, "Open 8-4", "INFO")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"name": "x", "reply": "r", "pattern": "a", "colour": "red"}, "colour"),
        ({"name": "", "pattern": "a", "reply": "r"}, "name"),
        ({"name": "has space", "pattern": "a", "reply": "r"}, "name"),
        ({"name": "x", "kind": "fuzzy", "pattern": "a", "reply": "r"}, "kind"),
        ({"name": "x", "pattern": "two words", "reply": "r"}, "pattern"),
        ({"name": "x", "pattern": "", "reply": "r"}, "pattern"),
        ({"name": "x", "pattern": "STOP", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": "(", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": "a" * 201, "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": r"(a)\1", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": "(?=a)", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": "(?<!a)b", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "regex", "pattern": "a{1000}{1000}", "reply": "r"}, "pattern"),
        ({"name": "x", "kind": "default", "pattern": "a", "reply": "r"}, "pattern"),
        ({"name": "x", "pattern": "a", "reply": ""}, "reply"),
        ({"name": "x", "pattern": "a", "reply": "hi {name}"}, "reply"),
        ({"name": "x", "pattern": "a", "reply": 5}, "reply"),
        ({"name": "x", "pattern": "a", "reply": "r", "position": "1"}, "position"),
        ({"name": "x", "pattern": "a", "reply": "r", "position": True}, "position"),
        ({"name": "x", "pattern": "a", "reply": "r", "position": -1}, "position"),
        ({"name": "x", "pattern": "a", "reply": "r", "active": "yes"}, "active"),
        ({"name": "x", "pattern": "a", "reply": "r", "number": "call me"}, "number"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        rule_from_body(body)
    assert caught.value.field == field


def test_the_example_rules_file_declares_valid_rules() -> None:
    rules = declared_rules(
        Path(__file__).resolve().parent.parent / "config" / "autoreply.example.toml"
    )
    assert {r.kind for r in rules} == {"keyword", "regex", "default"}


def test_a_rules_file_with_a_bad_or_repeated_rule_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "a"\nkind = "regex"\npattern = "("\nreply = "r"\n')
    with pytest.raises(SettingsError, match="rule 1: pattern"):
        declared_rules(bad)
    twice = tmp_path / "twice.toml"
    twice.write_text('[[rule]]\nname = "a"\npattern = "x"\nreply = "r"\n' * 2)
    with pytest.raises(SettingsError, match="declared twice"):
        declared_rules(twice)


# -- end to end through the sandbox ---------------------------------------------------


async def inbound_url(gateway: Gateway) -> str:
    account = (await gateway.api.get("/v1/accounts/sandbox")).json()
    url: str = account["callback_urls"]["inbound"]
    return url


async def receive(
    gateway: Gateway, text: str, *, sender: str = THEM, pid: str = ""
) -> dict[str, Any]:
    body = {"from": sender, "to": US, "text": text, "id": pid}
    answer = await gateway.raw.post(await inbound_url(gateway), json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def newest_inbound(gateway: Gateway) -> dict[str, Any]:
    inbound: dict[str, Any] = (await gateway.api.get("/v1/inbound")).json()["inbound"][0]
    return inbound


async def add_rule(gateway: Gateway, **body: Any) -> None:
    answer = await gateway.api.post("/v1/autoreplies", json=body)
    assert answer.status_code == 201, answer.text


async def delivered(gateway: Gateway, message_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any]:
        message = await gateway.message(message_id)
        return message if message["status"] == "delivered" else {}

    return await eventually(final)


async def test_a_keyword_reply_is_delivered_and_linked_to_the_inbound_message(
    gateway: Gateway,
) -> None:
    await add_rule(gateway, name="hours", pattern="HOURS", reply="We open at 9, {from}")
    answer = await receive(gateway, "hours please", pid="in-1")
    [reply_id] = answer["replies"]
    reply = await delivered(gateway, reply_id)
    assert (reply["to"], reply["sender"], reply["text"]) == (THEM, US, f"We open at 9, {THEM}")
    inbound = await newest_inbound(gateway)
    assert (inbound["rule"], inbound["reply"]["id"], inbound["reply"]["status"]) == (
        "hours",
        reply_id,
        "delivered",
    )
    events = [e["event"] for e in reply["events"]]
    assert events[0] == "message.queued" and "message.delivered" in events


async def test_a_retried_inbound_callback_is_stored_and_answered_once(gateway: Gateway) -> None:
    await add_rule(gateway, name="any", kind="default", reply="got it")
    first = await receive(gateway, "hi", pid="same")
    again = await receive(gateway, "hi", pid="same")
    assert len(first["replies"]) == 1 and again["replies"] == [] and again["stored"] == 0
    assert len((await gateway.api.get("/v1/inbound")).json()["inbound"]) == 1


async def test_regex_and_scoped_rules_answer_in_their_order(gateway: Gateway) -> None:
    await add_rule(
        gateway,
        name="elsewhere",
        kind="default",
        reply="wrong account",
        account="other",
        position=1,
    )
    await add_rule(
        gateway,
        name="order",
        kind="regex",
        pattern=r"(?i)order \d+",
        reply="order noted",
        position=2,
    )
    await add_rule(gateway, name="rest", kind="default", reply="thanks", position=3)
    await receive(gateway, "about Order 77")
    assert (await newest_inbound(gateway))["rule"] == "order"
    await receive(gateway, "something else", sender="+46701234568")
    assert (await newest_inbound(gateway))["rule"] == "rest"


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?P<x>a)(?P=x)", "(?=order)"])
async def test_a_pattern_re2_cannot_run_is_refused_with_422(gateway: Gateway, pattern: str) -> None:
    body = {"name": "bad", "kind": "regex", "pattern": pattern, "reply": "r"}
    answer = await gateway.api.post("/v1/autoreplies", json=body)
    assert answer.status_code == 422 and error_of(answer)["field"] == "pattern"
    assert "linear time" in error_of(answer)["message"]
    await add_rule(gateway, name="fine", kind="regex", pattern="order", reply="r")
    patched = await gateway.api.patch("/v1/autoreplies/fine", json={"pattern": pattern})
    assert patched.status_code == 422 and error_of(patched)["field"] == "pattern"
    [kept] = (await gateway.api.get("/v1/autoreplies")).json()["autoreplies"]
    assert (kept["name"], kept["pattern"]) == ("fine", "order")


async def test_a_catastrophic_rule_does_not_stall_the_inbound_callback(gateway: Gateway) -> None:
    await add_rule(gateway, name="as", kind="regex", pattern=CATASTROPHIC, reply="all a")
    missed = await receive(gateway, "a" * 5000 + "!", pid="in-1")
    assert missed["stored"] == 1 and missed["replies"] == []
    assert (await newest_inbound(gateway))["rule"] is None
    hit = await receive(gateway, "a" * 5000, pid="in-2", sender="+46701234568")
    assert len(hit["replies"]) == 1 and (await newest_inbound(gateway))["rule"] == "as"


async def test_stop_suppresses_the_sender_until_start(gateway: Gateway) -> None:
    stop = await receive(gateway, "STOP")
    [confirmation] = stop["replies"]
    assert (await delivered(gateway, confirmation))["to"] == THEM
    listed = (await gateway.api.get("/v1/suppressions")).json()["suppressions"]
    assert [(s["number"], s["keyword"]) for s in listed] == [(THEM, "STOP")]

    [refused] = await gateway.send(to=THEM, text="promo")
    assert (refused["status"], refused["error"]["code"]) == ("failed", "opted_out")
    stored = await gateway.message(refused["id"])
    assert stored["status"] == "failed" and stored["error"]["code"] == "opted_out"
    assert "message.sending" not in [e["event"] for e in stored["events"]]
    assert (await gateway.stats())["total"]["failed"] == 1

    start = await receive(gateway, "start")
    await delivered(gateway, start["replies"][0])
    assert (await gateway.api.get("/v1/suppressions")).json()["suppressions"] == []
    [sent] = await gateway.send(to=THEM, text="welcome back")
    assert (await delivered(gateway, sent["id"]))["status"] == "delivered"


async def test_an_opted_out_number_among_many_fails_alone(gateway: Gateway) -> None:
    await receive(gateway, "UNSUBSCRIBE")
    messages = await gateway.send(to=[THEM, "+46701234562"], text="news")
    assert [m["status"] for m in messages] == ["failed", "queued"]
    assert (await delivered(gateway, messages[1]["id"]))["to"] == "+46701234562"


async def test_suppressions_can_be_managed_by_hand(gateway: Gateway) -> None:
    added = await gateway.api.post("/v1/suppressions", json={"number": "+46701234560"})
    assert added.status_code == 201 and added.json()["number"] == "+46701234560"
    [refused] = await gateway.send(to="+46701234560", text="x")
    assert refused["status"] == "failed"
    assert (await gateway.api.delete("/v1/suppressions/+46701234560")).status_code == 204
    assert (await gateway.api.delete("/v1/suppressions/+46701234560")).status_code == 404
    bad = await gateway.api.post("/v1/suppressions", json={"number": "nope"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "number"


async def test_our_own_sender_id_and_our_own_replies_are_never_answered(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, autoreply_max_per_sender=10) as gateway:
        await add_rule(gateway, name="echo", kind="default", reply="Thanks for writing")
        patched = await gateway.api.patch("/v1/accounts/sandbox", json={"sender": "46709999999"})
        assert patched.status_code == 200, patched.text
        own = await receive(gateway, "hello", sender="+46709999999")
        assert (
            own["replies"] == [] and (await newest_inbound(gateway))["reply_note"] == "own_number"
        )
        await receive(gateway, "hello")
        # Another auto-responder sends our reply back to us: the ping-pong stops here.
        echo = await receive(gateway, "Thanks for writing", sender="+46701234561")
        assert (
            echo["replies"] == []
            and (await newest_inbound(gateway))["reply_note"] == "auto_reply_loop"
        )


async def test_a_sender_writing_again_and_again_gets_three_replies_an_hour(
    gateway: Gateway,
) -> None:
    await add_rule(gateway, name="any", kind="default", reply="noted")
    answers = [await receive(gateway, f"message {n}") for n in range(5)]
    assert [len(a["replies"]) for a in answers] == [1, 1, 1, 0, 0]
    assert (await newest_inbound(gateway))["reply_note"] == "rate_limited"


async def test_rules_come_from_the_autoreply_file_at_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "hi"\npattern = "hi"\nreply = "hello from file"\n')
    async with running_gateway(tmp_path / "data", autoreply_file=str(rules)) as gateway:
        listed = (await gateway.api.get("/v1/autoreplies")).json()["autoreplies"]
        assert [r["name"] for r in listed] == ["hi"]
        answer = await receive(gateway, "Hi")
        assert (await delivered(gateway, answer["replies"][0]))["text"] == "hello from file"
