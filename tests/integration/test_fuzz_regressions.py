"""Bugs the fuzzing of the API (tests/e2e/test_schemathesis.py) found, each kept from coming back."""

from __future__ import annotations

import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60


def _ticket_restarts(server: Server) -> int:
    return server.deps.health()["tickets"]["restarts_total"]


async def test_a_message_after_its_contact_was_deleted_opens_a_new_conversation_without_a_crash(
        api: Api, server: Server) -> None:
    """The fuzzer deleted a contact (its tickets go with it) while its conversation's actor was alive; the
    contact's next message crashed the actor on a foreign key (the cached contact and ticket were gone) and
    only the supervisor's restart let it through. Now the message starts over from the database: a new
    contact and ticket, no crash, nothing of the old conversation left."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511977776666", "name": "Bia", "body": "first"})
        [(contact_id, ticket_id)] = await wait_sql(
            server, "SELECT contact_id, id FROM tickets WHERE last_message = 'first'", None, [(1, 1)])
        restarts = _ticket_restarts(server)

        deleted = await api.client.delete(f"/contacts/{contact_id}", headers=auth(token))
        assert deleted.status_code == 200, deleted.text
        assert server.sql("SELECT count(*) FROM tickets WHERE id = %s", (ticket_id,)) == [(0,)]

        await inbound(api, token, wid, **{"from": "5511977776666", "name": "Bia", "body": "second"})
        await wait_sql(server, "SELECT count(*) FROM tickets WHERE last_message = 'second'", None, [(1,)])
        [(new_contact, new_ticket)] = server.sql("SELECT contact_id, id FROM tickets")  # the only one
        assert server.sql("SELECT body FROM messages WHERE ticket_id = %s", (new_ticket,)) == [("second",)]
        assert server.sql("SELECT number, name FROM contacts WHERE id = %s", (new_contact,)) == \
            [("5511977776666", "Bia")]
        assert _ticket_restarts(server) == restarts, "the conversation's actor crashed"

        # and the conversation goes on in the new ticket
        await inbound(api, token, wid, **{"from": "5511977776666", "body": "third"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE ticket_id = %s", (new_ticket,), [(2,)])
        assert _ticket_restarts(server) == restarts
