"""One winner per accept: agents accepting one pending ticket at once (the stock request, `PUT /tickets/:id
{status: "open", userId: <me>}`) get exactly one 200; the others 409 naming who has it, and nothing of
theirs is written or announced. The check is the write (storage, one conditional UPDATE): it holds without
the ticket actor too. A transfer of a ticket closed meanwhile is refused the same way; a close stays
idempotent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gateway.broker import Subscription
from storage import tickets as storage_tickets
from storage.tickets import TicketChange
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox
from tests.integration.test_tickets import kinds, sandbox_ticket

TIMEOUT = 30
COMPANY = 1


async def agents(api: Api, token: str, count: int) -> list[tuple[dict[str, Any], str]]:
    """`count` users of the company who see queue-less tickets, each with their own token."""
    made = []
    for index in range(count):
        user = await api.create_user(token, f"agent{index}@zapgate.test", name=f"Agente {index}", allTicket="enable")
        made.append((user, await api.login(f"agent{index}@zapgate.test", "user-pass-1")))
    return made


def opened_updates(events: Subscription, ticket_id: int) -> list[dict[str, Any]]:
    """The ticket updates announced so far that show the ticket open (drains the subscription)."""
    seen = []
    while (event := events.receive_nowait()) is not None:
        ticket = event.payload.get("ticket") or {}
        if event.name == f"company-{COMPANY}-ticket" and ticket.get("id") == ticket_id and ticket["status"] == "open":
            seen.append(ticket)
    return seen


@pytest.mark.parametrize("count", [2, 10])
async def test_agents_accepting_one_ticket_at_once_one_wins(api: Api, server: Server, count: int) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        staff = await agents(api, token, count)
        ticket_id = await sandbox_ticket(api, server, token, wid, "5511966660000", "Cliente")
        answers: dict[int, httpx.Response] = {}
        go = trio.Event()

        async def accept(index: int) -> None:
            user, user_token = staff[index]
            await go.wait()
            answers[index] = await api.client.put(f"/tickets/{ticket_id}",
                                                  json={"status": "open", "userId": user["id"]},
                                                  headers=auth(user_token))

        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(accept, index)
            await trio.testing.wait_all_tasks_blocked()  # every agent is at the start line
            go.set()

        winners = [index for index, answer in answers.items() if answer.status_code == 200]
        assert len(winners) == 1, {index: (a.status_code, a.text) for index, a in answers.items()}
        winner, _ = staff[winners[0]]
        assert answers[winners[0]].json()["userId"] == winner["id"]
        for index, answer in answers.items():
            if index != winners[0]:
                body = answer.json()
                assert (answer.status_code, body["error"], body["userId"], body["userName"]) == \
                    (409, "ERR_TICKET_ALREADY_ACCEPTED", winner["id"], winner["name"]), answer.text
                assert body["message"].endswith(f"accepted by {winner['name']}") and body["ticketId"] == ticket_id
        assert server.sql("SELECT status, user_id FROM tickets WHERE id = %s", (ticket_id,)) == [("open", winner["id"])]
        assert kinds(server, ticket_id) == ["created", "accepted"]
        assert server.sql("SELECT user_id FROM ticket_events WHERE ticket_id = %s AND kind = 'accepted'",
                          (ticket_id,)) == [(winner["id"],)]
        assert [t["userId"] for t in opened_updates(events, ticket_id)] == [winner["id"]]


async def test_the_statement_decides_without_the_actor(api: Api, server: Server) -> None:
    """Ten accepts straight on the storage, not serialised by the ticket actor: one row comes back."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        staff = await agents(api, token, 10)
        ticket_id = await sandbox_ticket(api, server, token, wid, "5511966660001", "Cliente")
        outcomes: list[Any] = []

        async def accept(user_id: int) -> None:
            try:
                changed = await storage_tickets.change_ticket(server.db, COMPANY, ticket_id,
                                                              TicketChange(status="open", set_user=True,
                                                                           user_id=user_id), user_id)
                outcomes.append(changed)
            except storage_tickets.TicketTaken as taken:
                outcomes.append(taken)

        async with trio.open_nursery() as nursery:
            for user, _ in staff:
                nursery.start_soon(accept, user["id"])
        won = [o for o in outcomes if isinstance(o, storage_tickets.Changed)]
        assert len(won) == 1 and won[0].events == ("accepted",)
        owner = won[0].ticket["user_id"]
        assert {(o.user_id, o.user_name) for o in outcomes if o not in won} == \
            {(owner, next(u["name"] for u, _ in staff if u["id"] == owner))}
        assert len(outcomes) == 10
        assert kinds(server, ticket_id) == ["created", "accepted"]


async def test_changes_on_a_ticket_that_moved_meanwhile(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        (ana, ana_token), (bia, bia_token), (caio, _) = await agents(api, token, 3)
        ticket_id = await sandbox_ticket(api, server, token, wid, "5511966660002", "Cliente")

        first = await api.client.put(f"/tickets/{ticket_id}", json={"status": "open", "userId": ana["id"]},
                                     headers=auth(ana_token))
        assert first.status_code == 200
        opened_updates(events, ticket_id)
        # Ana clicks accept again: nothing changes, nothing is announced
        again = await api.client.put(f"/tickets/{ticket_id}", json={"status": "open", "userId": ana["id"]},
                                     headers=auth(ana_token))
        assert (again.status_code, again.json()["userId"]) == (200, ana["id"])
        # Ana closes it; Bia, who still sees it open, transfers it (community and Gold requests): refused
        closed = await api.client.put(f"/tickets/{ticket_id}", json={"status": "closed", "userId": ana["id"]},
                                      headers=auth(ana_token))
        assert closed.status_code == 200
        before = (server.sql("SELECT status, user_id, queue_id, updated_at FROM tickets"), kinds(server, ticket_id))
        for transfer in ({"userId": caio["id"], "status": "open"},
                         {"userId": caio["id"], "status": "open", "queueId": None, "isTransfered": True}):
            refused = await api.client.put(f"/tickets/{ticket_id}", json=transfer, headers=auth(bia_token))
            body = refused.json()
            assert (refused.status_code, body["error"], body["userId"], body["ticketStatus"]) == \
                (409, "ERR_TICKET_CLOSED_MEANWHILE", ana["id"], "closed"), refused.text
            assert ana["name"] in body["message"]
        # closing what is closed already cannot be told from a stale close: it stays a no-op
        closed_again = await api.client.put(f"/tickets/{ticket_id}", json={"status": "closed", "userId": bia["id"]},
                                            headers=auth(bia_token))
        assert (closed_again.status_code, closed_again.json()["status"]) == (200, "closed")
        assert (server.sql("SELECT status, user_id, queue_id, updated_at FROM tickets"), kinds(server, ticket_id)) == \
            before
        assert kinds(server, ticket_id) == ["created", "accepted", "closed"]
        assert opened_updates(events, ticket_id) == []


def _row(status: str, user_id: int | None = None, queue_id: int | None = None) -> dict[str, Any]:
    return {"id": 5, "status": status, "user_id": user_id, "queue_id": queue_id, "user_name": "Dona"}


@pytest.mark.parametrize(("row", "change", "refused"), [
    (_row("open", 3), TicketChange(status="open", set_user=True, user_id=7), storage_tickets.TicketTaken),
    (_row("open", 3), TicketChange(status="open"), storage_tickets.TicketTaken),
    (_row("open", 3), TicketChange(status="open", set_user=True, user_id=7, set_queue=True, queue_id=2),
     storage_tickets.TicketTaken),  # the Gold accept of a queue-less ticket names the queue
    (_row("closed", 3), TicketChange(status="open", set_user=True, user_id=9), storage_tickets.TicketClosedMeanwhile),
    (_row("closed", 3), TicketChange(status="pending", set_user=True, user_id=None, set_queue=True, queue_id=2,
                                     transfer=True), storage_tickets.TicketClosedMeanwhile),
])
def test_requests_the_changed_ticket_tells_apart(row: dict[str, Any], change: TicketChange, refused: type) -> None:
    with pytest.raises(refused) as error:
        storage_tickets.plan_change(row, change, caller_id=7)
    assert (error.value.user_id, error.value.user_name, error.value.status) == (3, "Dona", row["status"])


@pytest.mark.parametrize(("row", "change", "expected"), [
    (_row("open", 7), TicketChange(status="open", set_user=True, user_id=7), ("open", 7, None, ())),  # twice
    (_row("open", 3), TicketChange(status="open", set_user=True, user_id=9), ("open", 9, None, ("transferred",))),
    (_row("open", 3), TicketChange(status="open", set_user=True, user_id=7, transfer=True),
     ("open", 7, None, ("transferred",))),  # taking it over, said so (Gold's isTransfered)
    (_row("open", 3), TicketChange(status="closed", set_user=True, user_id=7), ("closed", 7, None, ("closed",))),
    (_row("closed", 3), TicketChange(status="closed", set_user=True, user_id=7), ("closed", 3, None, ())),
    (_row("closed", 3), TicketChange(status="open", set_user=True, user_id=7), ("open", 7, None, ("reopened",))),
    (_row("pending"), TicketChange(status="open", set_user=True, user_id=9), ("open", 9, None, ("accepted",))),
])
def test_requests_it_cannot_tell_apply_to_the_ticket_as_it_is(row: dict[str, Any], change: TicketChange,
                                                               expected: tuple[Any, ...]) -> None:
    plan = storage_tickets.plan_change(row, change, caller_id=7)
    assert (plan.status, plan.user_id, plan.queue_id, plan.events) == expected
