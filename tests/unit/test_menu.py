"""The inbound routing decision (actors/automation/menu.py): pure, so every case is a call."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from actors.automation import menu
from actors.automation.menu import AutoAssign, Send, Update

NOW = dt.datetime(2026, 12, 7, 14, 0, tzinfo=dt.UTC)
SALES = menu.Queue(id=1, name="Vendas", greeting="Bem-vindo a Vendas, {{name}}")
SUPPORT = menu.Queue(id=2, name="Suporte", greeting="Suporte aqui", options=(
    menu.Option(id=10, parent_id=None, option="1", title="Segunda via", message="Escolha o mês"),
    menu.Option(id=11, parent_id=None, option="2", title="Falar com alguém", message="Um momento",
                exit_chatbot=True),
    menu.Option(id=12, parent_id=None, option="3", title="Comercial", message="Indo para vendas",
                forward_queue_id=1),
    menu.Option(id=20, parent_id=10, option="1", title="Janeiro", message="Aqui está janeiro"),
    menu.Option(id=21, parent_id=10, option="2", title="Fevereiro", message="Aqui está fevereiro"),
    menu.Option(id=30, parent_id=20, option="1", title="Só um filho", message="Filho único"),
))
CONNECTION = menu.Connection(id=7, greeting="Olá {{name}}! Escolha:", queues=(SALES, SUPPORT), max_use_bot_queues=2,
                             transfer_message="Vou te passar para um atendente")


def ctx(**ticket: object) -> menu.Context:
    fields: dict[str, object] = {"id": 100, "status": "pending", **ticket}
    return menu.Context(ticket=menu.Ticket(**fields),  # type: ignore[arg-type]
                        connection=CONNECTION, settings=menu.Settings(), now=NOW,
                        queues={1: SALES, 2: SUPPORT}, values={"name": "Ana"})


def sends(actions: list[menu.Action]) -> list[str]:
    return [action.body for action in actions if isinstance(action, Send)]


def fields(actions: list[menu.Action]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for action in actions:
        if isinstance(action, Update):
            merged.update(action.fields)
    return merged


def test_a_new_ticket_gets_the_greeting_and_the_numbered_queue_menu() -> None:
    actions = menu.decide(ctx(fresh=True), "oi")
    assert sends(actions) == ["Olá Ana! Escolha:\n\n*[ 1 ]* - Vendas\n*[ 2 ]* - Suporte"]
    assert fields(actions)["chatbot"] is True


@pytest.mark.parametrize("answer", [" 2 ", "2.", "2️⃣", "*[ 2 ]*", "(2)", "02"])
def test_answers_are_read_leniently(answer: str) -> None:
    actions = menu.decide(ctx(chatbot=True), answer)
    assert fields(actions)["queue_id"] == 2
    assert sends(actions)[0].startswith("Suporte aqui\n\n*[ 1 ]* - Segunda via")


def test_a_queue_without_options_greets_with_variables_and_offers_the_ticket() -> None:
    actions = menu.decide(ctx(chatbot=True), "1")
    assert fields(actions) == {"queue_id": 1, "queue_option_id": None, "bot_retries": 0, "status": "pending",
                               "chatbot": False}
    assert sends(actions) == ["Bem-vindo a Vendas, Ana"]
    assert actions[-1] == AutoAssign(1)


def test_unknown_answers_resend_the_menu_up_to_the_limit_then_a_human_takes_over() -> None:
    first = menu.decide(ctx(chatbot=True, bot_retries=0), "banana")
    assert fields(first)["bot_retries"] == 1 and "*[ 1 ]* - Vendas" in sends(first)[0]
    second = menu.decide(ctx(chatbot=True, bot_retries=1), "banana")
    assert fields(second)["bot_retries"] == 2
    third = menu.decide(ctx(chatbot=True, bot_retries=2), "banana")
    assert fields(third)["chatbot"] is False
    assert sends(third) == ["Vou te passar para um atendente"]


def test_chatbot_auto_exit_hands_over_at_the_first_unknown_answer() -> None:
    context = attrs.evolve(ctx(chatbot=True), settings=menu.Settings(chatbot_auto_exit=True))
    actions = menu.decide(context, "banana")
    assert fields(actions)["chatbot"] is False


def test_a_ticket_handed_to_a_human_is_not_menued_again() -> None:
    assert menu.decide(ctx(chatbot=False), "1") == []


def test_option_tree_sub_menu_then_leaf() -> None:
    actions = menu.decide(ctx(queue_id=2, chatbot=True), "1")
    assert fields(actions)["queue_option_id"] == 10
    assert sends(actions) == ["Escolha o mês\n\n*[ 1 ]* - Janeiro\n*[ 2 ]* - Fevereiro\n\n[ # ] - "
                              + menu.BACK_TO_MAIN]
    deeper = menu.decide(ctx(queue_id=2, chatbot=True, queue_option_id=10), "2")
    assert fields(deeper)["queue_option_id"] == 21
    assert sends(deeper)[0].startswith("Aqui está fevereiro")


def test_a_node_with_one_child_advances_by_itself() -> None:
    actions = menu.decide(ctx(queue_id=2, chatbot=True, queue_option_id=20), "whatever")
    assert fields(actions)["queue_option_id"] == 30
    assert sends(actions)[0].startswith("Filho único")


def test_exit_chatbot_option_hands_to_a_human_of_the_queue() -> None:
    actions = menu.decide(ctx(queue_id=2, chatbot=True), "2")
    assert sends(actions) == ["Um momento"]
    assert fields(actions)["chatbot"] is False
    assert actions[-1] == AutoAssign(2)


def test_forward_option_moves_the_ticket_and_starts_the_other_queue() -> None:
    actions = menu.decide(ctx(queue_id=2, chatbot=True), "3")
    assert sends(actions) == ["Indo para vendas", "Bem-vindo a Vendas, Ana"]
    assert fields(actions)["queue_id"] == 1
    assert actions[-1] == AutoAssign(1)


def test_hash_goes_back_to_the_main_menu() -> None:
    actions = menu.decide(ctx(queue_id=2, chatbot=True, queue_option_id=10), "#")
    assert fields(actions)["queue_id"] is None and fields(actions)["chatbot"] is True
    assert sends(actions) == ["Olá Ana! Escolha:\n\n*[ 1 ]* - Vendas\n*[ 2 ]* - Suporte"]


def test_numeric_icons() -> None:
    context = attrs.evolve(ctx(fresh=True), settings=menu.Settings(show_numeric_icons=True))
    assert sends(menu.decide(context, "oi")) == ["Olá Ana! Escolha:\n\n1️⃣ - Vendas\n2️⃣ - Suporte"]


def test_one_queue_goes_straight_in_and_no_queue_greets_once() -> None:
    single = attrs.evolve(ctx(fresh=True), connection=attrs.evolve(CONNECTION, queues=(SALES,)))
    actions = menu.decide(single, "oi")
    assert fields(actions)["queue_id"] == 1 and sends(actions) == ["Bem-vindo a Vendas, Ana"]
    none = attrs.evolve(ctx(fresh=True), connection=attrs.evolve(CONNECTION, queues=()))
    assert sends(menu.decide(none, "oi")) == ["Olá Ana! Escolha:"]
    again = attrs.evolve(ctx(fresh=False), connection=attrs.evolve(CONNECTION, queues=()))
    assert menu.decide(again, "oi") == []


def test_out_of_hours_once_per_closed_period() -> None:
    reopens = NOW + dt.timedelta(hours=18)
    closed = attrs.evolve(ctx(fresh=True),
                          settings=menu.Settings(schedule_type="company", out_of_hours_action="closed"),
                          hours=menu.Hours(False, reopens), connection=attrs.evolve(CONNECTION, out_of_hours=""))
    actions = menu.decide(closed, "oi")
    assert sends(actions) == [menu.DEFAULT_OUT_OF_HOURS]
    assert fields(actions)["ooh_until"] == reopens and fields(actions)["status"] == "closed"
    said = attrs.evolve(closed, ticket=attrs.evolve(closed.ticket, ooh_until=reopens, fresh=False))
    assert sends(menu.decide(said, "alô?")) == []
    next_period = attrs.evolve(said, now=reopens + dt.timedelta(days=1), hours=menu.Hours(False, None))
    again = menu.decide(next_period, "alô?")
    assert sends(again) == [menu.DEFAULT_OUT_OF_HOURS]
    assert fields(again)["ooh_until"] == next_period.now + menu.NEVER_OPENS


def test_out_of_hours_leaves_a_served_ticket_alone_while_its_agent_is_online() -> None:
    base = ctx(status="open", user_id=5, queue_id=1, user_online=True)
    closed = attrs.evolve(base, settings=menu.Settings(schedule_type="company"), hours=menu.Hours(False, None))
    assert menu.decide(closed, "oi") == []
    offline = attrs.evolve(closed, ticket=attrs.evolve(closed.ticket, user_online=False))
    actions = menu.decide(offline, "oi")
    assert sends(actions) == [menu.DEFAULT_OUT_OF_HOURS] and "status" not in fields(actions)


def test_queue_hours_are_checked_when_the_queue_is_chosen() -> None:
    sales = attrs.evolve(SALES, out_of_hours="Vendas fechado")
    context = attrs.evolve(ctx(chatbot=True), settings=menu.Settings(schedule_type="queue"),
                           queue_hours={1: menu.Hours(False, NOW + dt.timedelta(hours=1)), 2: menu.ALWAYS_OPEN},
                           queues={1: sales, 2: SUPPORT}, connection=attrs.evolve(CONNECTION, queues=(sales, SUPPORT)))
    actions = menu.decide(context, "1")
    assert sends(actions) == ["Vendas fechado"]
    assert fields(actions)["queue_id"] == 1 and fields(actions)["status"] == "pending"
    assert not any(isinstance(action, AutoAssign) for action in actions)


def test_served_tickets_are_left_alone() -> None:
    assert menu.decide(ctx(status="open", user_id=3, queue_id=1), "1") == []


@pytest.mark.parametrize(("text", "expected"), [("1", 1), (" 3 ", 3), ("3)", 3), ("🔟", 10), ("0", None),
                                                ("11", None), ("um", None), ("", None)])
def test_choice(text: str, expected: int | None) -> None:
    assert menu.choice(text, 10) == expected
