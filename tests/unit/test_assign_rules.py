"""Auto-assignment's choice and the rating/inactivity rules (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from actors.automation import assign, rules
from actors.automation.assign import Candidate

AGENTS = [Candidate(1, online=True, active=0), Candidate(2, online=False, active=0),
          Candidate(3, online=True, active=2, max_tickets=2), Candidate(4, online=True, active=1)]


def test_round_robin_takes_the_next_online_agent_with_room_and_wraps() -> None:
    assert assign.pick("round_robin", AGENTS) == 1
    assert assign.pick("round_robin", AGENTS, last_user_id=1) == 4  # 2 offline, 3 at capacity
    assert assign.pick("round_robin", AGENTS, last_user_id=4) == 1


def test_least_busy_and_off_and_nobody() -> None:
    assert assign.pick("least_busy", AGENTS) == 1
    assert assign.pick("least_busy", AGENTS, exclude={1}) == 4
    assert assign.pick("off", AGENTS) is None
    assert assign.pick("round_robin", [Candidate(2, online=False, active=0)]) is None


@pytest.mark.parametrize(("body", "meaning"), [("5", 5), (" 3 ", 3), ("9", 5), ("0", 1), ("4,6", 5), ("!", "reopen"),
                                               ("ok", "cancel"), ("não quero avaliar agora", None)])
def test_rating_answers(body: str, meaning: object) -> None:
    assert rules.rating_answer(body) == meaning


def test_waits_follow_the_ticket_state() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    configured = rules.Rules(chatbot_minutes=10, no_queue_minutes=20, open_minutes=30, expire_minutes=40)
    in_menu = {"status": "pending", "chatbot": True, "queue_id": None, "user_id": None}
    ops = rules.waits(in_menu, configured, now, contact_wrote=True)
    assert rules.Arm("ticket.chatbot", now + dt.timedelta(minutes=10)) in ops
    assert rules.Disarm("ticket.noqueue") in ops and rules.Disarm("ticket.open") in ops
    assert rules.Arm("ticket.expire", now + dt.timedelta(minutes=40)) in ops
    served = {"status": "open", "chatbot": False, "queue_id": 1, "user_id": 3}
    ops = rules.waits(served, configured, now, contact_wrote=False)
    assert rules.Arm("ticket.open", now + dt.timedelta(minutes=30)) in ops
    assert not any(isinstance(op, rules.Arm) and op.kind == "ticket.expire" for op in ops)
    closed = {**served, "status": "closed"}
    ops = rules.waits(closed, configured, now, contact_wrote=True)
    assert ops and all(isinstance(op, rules.Disarm) for op in ops)
    assert rules.waits(in_menu, rules.Rules(), now, contact_wrote=True) == []  # rules off: no statements
    assert not rules.still_on("ticket.expire", rules.Rules()) and rules.still_on("ticket.rating", rules.Rules())
