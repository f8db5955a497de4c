"""Queue routing end to end on the sandbox: menus, option trees, business hours, auto-assignment, ratings,
inactivity timers (issue 12). The real app; what the contact gets is read from the sandbox's outbox."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import trio

from tests.integration.conftest import ADMIN_EMAIL, Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound

TIMEOUT = 60
CUSTOMER = "5511955550001"


async def outbox(api: Api, token: str, wid: int) -> list[str]:
    response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
    assert response.status_code == 200, response.text
    return [item["body"] for item in response.json()]


async def wait_outbox(api: Api, token: str, wid: int, count: int) -> list[str]:
    while len(bodies := await outbox(api, token, wid)) < count:
        await trio.sleep(0.05)
    return bodies


async def settle(api: Api, token: str, wid: int, count: int) -> list[str]:
    """The outbox once it holds `count` messages and nothing more comes for a moment."""
    bodies = await wait_outbox(api, token, wid, count)
    await trio.sleep(0.5)
    again = await outbox(api, token, wid)
    assert again == bodies, (bodies, again)
    return bodies


async def ticket_of(server: Server, number: str = CUSTOMER) -> dict[str, Any]:
    rows = await trio.to_thread.run_sync(server.sql, (
        "SELECT row_to_json(t) FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s "
        "ORDER BY t.id DESC LIMIT 1"), (number,))
    return rows[0][0] if rows else {}


async def make_queue(api: Api, token: str, name: str, **fields: Any) -> int:
    response = await api.client.post("/queue", json={"name": name, "color": "#123456", **fields},
                                     headers=auth(token))
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


async def attach(api: Api, token: str, wid: int, queue_ids: list[int], **fields: Any) -> None:
    response = await api.client.put(f"/whatsapp/{wid}", json={"queueIds": queue_ids, **fields}, headers=auth(token))
    assert response.status_code == 200, response.text


async def add_option(api: Api, token: str, queue_id: int, option: str, title: str, message: str = "",
                     **fields: Any) -> int:
    response = await api.client.post("/queue-options", json={"queueId": queue_id, "option": option, "title": title,
                                                             "message": message, **fields}, headers=auth(token))
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


async def set_setting(api: Api, token: str, key: str, value: str) -> None:
    response = await api.client.put(f"/settings/{key}", json={"value": value}, headers=auth(token))
    assert response.status_code == 200, response.text


async def two_queues(api: Api, server: Server, token: str) -> tuple[int, int, int]:
    wid = await connected_sandbox(api, token)
    sales = await make_queue(api, token, "Vendas", greetingMessage="Bem-vindo a Vendas, {{firstname}}")
    support = await make_queue(api, token, "Suporte", greetingMessage="Suporte: escolha")
    await add_option(api, token, support, "1", "Boleto", "Segue o boleto")
    await add_option(api, token, support, "2", "Humano", "Um momento", exitChatbot=True)
    await attach(api, token, wid, [sales, support], greetingMessage="Olá {{name}}! Escolha um setor:")
    return wid, sales, support


async def test_menu_answer_routes_into_the_second_queue_with_its_greeting(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid, _sales, support = await two_queues(api, server, token)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ana Souza", "body": "oi"})
        menu = await settle(api, token, wid, 1)
        assert menu == ["Olá Ana Souza! Escolha um setor:\n\n*[ 1 ]* - Vendas\n*[ 2 ]* - Suporte"]
        ticket = await ticket_of(server)
        assert ticket["chatbot"] is True and ticket["queue_id"] is None
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ana Souza", "body": " 2 "})
        bodies = await settle(api, token, wid, 2)
        assert bodies[1].startswith("Suporte: escolha\n\n*[ 1 ]* - Boleto\n*[ 2 ]* - Humano")
        ticket = await ticket_of(server)
        assert ticket["queue_id"] == support and ticket["chatbot"] is True and ticket["status"] == "pending"
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ana Souza", "body": "2️⃣"})
        bodies = await settle(api, token, wid, 3)
        assert bodies[2] == "Um momento"
        ticket = await ticket_of(server)
        assert ticket["chatbot"] is False and ticket["queue_id"] == support
        # the automated messages are the ticket's, sent by the system, in order after what they answer
        rows = server.sql("SELECT from_me, body, sent_by FROM messages WHERE ticket_id = %s ORDER BY id",
                          (ticket["id"],))
        assert [(r[0], r[2]) for r in rows] == [(False, None), (True, "system"), (False, None), (True, "system"),
                                                (False, None), (True, "system")]


async def test_a_redelivered_message_is_not_routed_twice(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid, _sales, _support = await two_queues(api, server, token)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ana", "body": "oi", "id": "FIXED-ID-1"})
        await settle(api, token, wid, 1)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ana", "body": "oi", "id": "FIXED-ID-1"})
        assert len(await settle(api, token, wid, 1)) == 1


async def test_out_of_hours_message_once_per_period(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await attach(api, token, wid, [], outOfHoursMessage="Fechados agora, {{firstname}}")
        # closed all week (every day's hours are empty): never open
        closed_week = [{"weekday": day, "weekdayEn": en, "startTime": "", "endTime": ""} for day, en in enumerate(
            ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"))]
        server.sql("UPDATE companies SET schedules = %s WHERE id = 1", (json.dumps(closed_week),))
        await set_setting(api, token, "scheduleType", "company")
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Bia Lima", "body": "alô"})
        assert await settle(api, token, wid, 1) == ["Fechados agora, Bia"]
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Bia Lima", "body": "tem alguém?"})
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Bia Lima", "body": "???"})
        assert await settle(api, token, wid, 1) == ["Fechados agora, Bia"]
        ticket = await ticket_of(server)
        assert ticket["ooh_until"] is not None and ticket["status"] == "pending"


async def test_auto_assignment_goes_to_online_agents_with_room_in_turn(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        queue = await make_queue(api, token, "Vendas")
        server.sql("UPDATE queues SET auto_assign = 'round_robin' WHERE id = %s", (queue,))
        await attach(api, token, wid, [queue])
        agents = [await api.create_user(token, f"agent{n}@zapgate.test", queueIds=[queue]) for n in range(3)]
        ids = [agent["id"] for agent in agents]
        # agent 0 and 1 online, agent 2 offline; agent 1 at capacity (one ticket, limit one)
        server.sql("UPDATE users SET online = (id = ANY(%s)) WHERE id = ANY(%s)", (ids[:2], ids))
        server.sql("UPDATE users SET max_tickets = 1 WHERE id = %s", (ids[1],))
        contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (1, 'x', '5511000000009') "
                             "RETURNING id")[0][0]
        server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, user_id) "
                   "VALUES (1, %s, %s, 'open', %s)", (contact, wid, ids[1]))
        for n in range(4):
            await inbound(api, token, wid, **{"from": f"55119666600{n:02d}", "name": f"C{n}", "body": "oi"})
            number = f"55119666600{n:02d}"
            while (await ticket_of(server, number)).get("user_id") is None:
                await trio.sleep(0.05)
        owners = [(await ticket_of(server, f"55119666600{n:02d}"))["user_id"] for n in range(4)]
        assert owners == [ids[0]] * 4  # the only online agent with room, every time
        # room for agent 1 now: the turn alternates between the two
        server.sql("UPDATE users SET max_tickets = NULL WHERE id = %s", (ids[1],))
        for n in range(4, 8):
            number = f"55119666600{n:02d}"
            await inbound(api, token, wid, **{"from": number, "name": f"C{n}", "body": "oi"})
            while (await ticket_of(server, number)).get("user_id") is None:
                await trio.sleep(0.05)
        owners = [(await ticket_of(server, f"55119666600{n:02d}"))["user_id"] for n in range(4, 8)]
        assert owners == [ids[1], ids[0], ids[1], ids[0]]
        assert ids[2] not in owners


async def close(api: Api, token: str, ticket_id: int) -> None:
    response = await api.client.put(f"/tickets/{ticket_id}", json={"status": "closed"}, headers=auth(token))
    assert response.status_code == 200, response.text


async def accepted_ticket(api: Api, server: Server, token: str, wid: int, number: str) -> dict[str, Any]:
    await inbound(api, token, wid, **{"from": number, "name": "Caio", "body": "preciso de ajuda"})
    while not server.sql("SELECT 1 FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                         (number,)):
        await trio.sleep(0.05)
    ticket = await ticket_of(server, number)
    response = await api.client.put(f"/tickets/{ticket['id']}", json={"status": "open"}, headers=auth(token))
    assert response.status_code == 200, response.text
    return ticket


async def test_rating_after_close_is_stored_and_bang_reopens(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await attach(api, token, wid, [], ratingMessage="Avalie-nos!", complationMessage="Obrigado, {{firstname}}!")
        await set_setting(api, token, "userRating", "enabled")
        ticket = await accepted_ticket(api, server, token, wid, CUSTOMER)
        await close(api, token, ticket["id"])
        bodies = await settle(api, token, wid, 1)
        assert bodies[0].startswith("Avalie-nos!\n\n*Envie uma avaliação de 1 a 5*")
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Caio", "body": "5"})
        assert (await settle(api, token, wid, 2))[1] == "Obrigado, Caio!"
        admin_id = server.sql("SELECT id FROM users WHERE email = %s", (ADMIN_EMAIL,))[0][0]
        rating = server.sql("SELECT ticket_id, user_id, rate FROM user_ratings")
        assert rating == [(ticket["id"], admin_id, 5)]
        closed = await ticket_of(server)
        assert closed["id"] == ticket["id"] and closed["status"] == "closed" and closed["rating_at"] is None
        assert len(server.sql("SELECT id FROM tickets")) == 1  # the answer opened no new ticket

        # the next close asks again; `!` reopens the same ticket to the same agent
        reopened = await api.client.put(f"/tickets/{ticket['id']}", json={"status": "open"}, headers=auth(token))
        assert reopened.status_code == 200, reopened.text
        await close(api, token, ticket["id"])
        await wait_outbox(api, token, wid, 3)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Caio", "body": "!"})
        assert (await settle(api, token, wid, 4))[3] == "Atendimento reaberto"
        again = await ticket_of(server)
        assert again["id"] == ticket["id"] and again["status"] == "open" and again["user_id"] == admin_id
        assert server.sql("SELECT count(*) FROM user_ratings") == [(1,)]


async def test_expired_ticket_timer_closes_with_its_message(api: Api, server: Server) -> None:
    """A timer end to end: the connection's expiry closes an active ticket once the contact is silent."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await attach(api, token, wid, [], expiresTicket=1, expiresInactiveMessage="Encerrado por inatividade")
        router = server.deps.tickets
        offset = dt.timedelta(0)
        router.clock = lambda: dt.datetime.now(dt.UTC) + offset  # routing's wall clock, moved by the test
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Dani", "body": "oi"})
        while not server.sql("SELECT 1 FROM timers WHERE kind = 'ticket.expire' AND state = 'pending'"):
            await trio.sleep(0.05)
        # due in a minute: bring it forward instead of waiting
        server.sql("UPDATE timers SET due_at = now() WHERE kind = 'ticket.expire'")
        router.scheduler.nudge(None)
        assert await settle(api, token, wid, 1) == ["Encerrado por inatividade"]
        ticket = await ticket_of(server)
        assert ticket["status"] == "closed"
        assert server.sql("SELECT state FROM timers WHERE kind = 'ticket.expire'") == [("done",)]


async def fire_now(server: Server, kind: str) -> None:
    """Bring a pending timer of `kind` forward to now (instead of waiting its minutes), wake the scheduler, and
    wait until it has fired."""
    while not (due := await trio.to_thread.run_sync(
            server.sql, "UPDATE timers SET due_at = now() WHERE kind = %s AND state = 'pending' RETURNING id",
            (kind,))):
        await trio.sleep(0.05)
    server.deps.tickets.scheduler.nudge(None)
    while await trio.to_thread.run_sync(server.sql, "SELECT 1 FROM timers WHERE id = %s AND state <> 'done'",
                                        (due[0][0],)):
        await trio.sleep(0.05)


async def test_an_auto_assigned_ticket_nobody_accepts_is_offered_to_the_next_agent(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        queue = await make_queue(api, token, "Vendas", autoAssign="round_robin")
        await attach(api, token, wid, [queue])
        await set_setting(api, token, "tempoRoteador", "2")
        ids = [(await api.create_user(token, f"rr{n}@zapgate.test", queueIds=[queue]))["id"] for n in range(2)]
        server.sql("UPDATE users SET online = true WHERE id = ANY(%s)", (ids,))
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Eva", "body": "oi"})
        while (await ticket_of(server)).get("user_id") is None:
            await trio.sleep(0.05)
        assert (await ticket_of(server))["user_id"] == ids[0]
        await fire_now(server, "ticket.reoffer")
        ticket = await ticket_of(server)
        assert ticket["user_id"] == ids[1] and ticket["status"] == "pending"


async def test_a_menu_left_unanswered_times_out_into_the_configured_queue(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid, sales, _support = await two_queues(api, server, token)
        await set_setting(api, token, "chatbotTicketTimeout", "5")
        await set_setting(api, token, "chatbotTicketTimeoutAction", str(sales))
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Fabi", "body": "oi"})
        await settle(api, token, wid, 1)
        await fire_now(server, "ticket.chatbot")
        ticket = await ticket_of(server)
        assert ticket["queue_id"] == sales and ticket["chatbot"] is False and ticket["status"] == "pending"
        # the frontends saw the bot move it
        moved = []
        while (event := events.receive_nowait()) is not None:
            if event.name == "company-1-ticket" and event.payload.get("action") == "update":
                moved.append(event.payload["ticket"])
        assert any(t["id"] == ticket["id"] and t["queueId"] == sales and not t["chatbot"] for t in moved)


async def test_no_queue_and_open_ticket_timeouts_close_and_give_back(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await set_setting(api, token, "noQueueTimeout", "10")
        await set_setting(api, token, "openTicketTimeout", "10")
        await set_setting(api, token, "openTicketTimeoutAction", "pending")
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Gil", "body": "oi"})
        await fire_now(server, "ticket.noqueue")
        assert (await ticket_of(server))["status"] == "closed"
        # a new conversation, taken by an agent, then silent: back to pending
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Gil", "body": "de novo"})
        while (ticket := await ticket_of(server))["status"] != "pending":
            await trio.sleep(0.05)
        response = await api.client.put(f"/tickets/{ticket['id']}", json={"status": "open"}, headers=auth(token))
        assert response.status_code == 200, response.text
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Gil", "body": "obrigado"})
        await fire_now(server, "ticket.open")
        again = await ticket_of(server)
        assert again["id"] == ticket["id"] and again["status"] == "pending" and again["user_id"] is None


async def test_a_contact_who_writes_soon_after_a_close_reopens_that_ticket(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await set_setting(api, token, "autoReopenTimeout", "30")
        ticket = await accepted_ticket(api, server, token, wid, CUSTOMER)
        await close(api, token, ticket["id"])
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Caio", "body": "esqueci uma coisa"})
        while (again := await ticket_of(server))["status"] == "closed":
            await trio.sleep(0.05)
        assert again["id"] == ticket["id"] and again["status"] == "pending" and again["user_id"] is None
        assert server.sql("SELECT count(*) FROM tickets") == [(1,)]
        assert server.sql("SELECT kind FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                          (ticket["id"],))[-1] == ("reopened",)


async def test_an_option_with_a_file_sends_it_with_its_message_as_caption(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        queue = await make_queue(api, token, "Financeiro", greetingMessage="Financeiro:")
        option = await add_option(api, token, queue, "1", "Tabela", "Segue a tabela, {{firstname}}")
        await add_option(api, token, queue, "2", "Outro", "Ok")
        pdf = b"%PDF-1.4 tabela de precos"
        uploaded = await api.client.post(f"/queue-options/{option}/media-upload", headers=auth(token),
                                         files={"file": ("tabela.pdf", pdf, "application/pdf")})
        assert uploaded.status_code in (200, 201), uploaded.text
        await attach(api, token, wid, [queue])
        await set_setting(api, token, "ticketAcceptedMessage", "unused here: the ticket is not auto-assigned")
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Hugo Reis", "body": "oi"})
        await settle(api, token, wid, 1)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Hugo Reis", "body": "1"})
        await wait_outbox(api, token, wid, 3)
        response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
        entries = response.json()
        media = entries[1]
        assert media["kind"] == "document" and media["filename"] == "tabela.pdf" and media["size"] == len(pdf)
        assert entries[2]["body"].startswith("Segue a tabela, Hugo\n\n")


async def test_auto_assignment_greets_with_the_accepted_message(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        queue = await make_queue(api, token, "Vendas", autoAssign="least_busy")
        await attach(api, token, wid, [queue])
        agent = await api.create_user(token, "lb@zapgate.test", name="Lia", queueIds=[queue])
        server.sql("UPDATE users SET online = true WHERE id = %s", (agent["id"],))
        await set_setting(api, token, "ticketAcceptedMessage", "{{greeting}}, {{firstname}}! Aqui é {{user}}.")
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Ivo Lima", "body": "oi"})
        bodies = await settle(api, token, wid, 1)
        assert bodies[0].endswith(", Ivo! Aqui é Lia.")
        assert (await ticket_of(server))["user_id"] == agent["id"]
