"""Contract fixtures: one live zapgate (the real command) per module, and a world the frontend's requests act on.

The world is what a walk of a frontend had on screen: an admin, a queue, an agent, a paired sandbox connection,
a customer whose message opened a ticket the admin accepted. Requests that change or delete a resource get a
fresh one (`World.fresh`) so their order does not matter; reads share the world.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.conftest import _admin_conn, _new_database, url_of
from tests.e2e.conftest import Process, start_zapgate, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "frontend-walk"))

FRONTEND = "http://localhost:3000"
ADMIN_EMAIL = "admin@zapgate.local"
ADMIN_PASSWORD = "contract-pass-1"


def future_send_at() -> str:
    """A schedule's `sendAt` as ticketz's form writes it (local minutes, no zone), a day from now: a walk's
    recorded time is in the past when it is replayed."""
    return (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")


def load_walk(name: str) -> list[dict[str, Any]]:
    """The request list a walk recorded (tools/frontend-walk/walk.py --record)."""
    return json.loads((Path(__file__).parent / f"walk_{name}.json").read_text())["requests"]


@attrs.define
class World:
    client: httpx.Client
    token: str
    ids: dict[str, Any]
    numbers: Iterator[int] = attrs.field(factory=lambda: count(1))

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        return wait_until(check, timeout, what)

    # --- fresh resources, for requests that change or delete one -------------------------------------------

    def new_connection(self) -> dict[str, Any]:
        connection = self.call("POST", "/whatsapp", json={"name": f"Contract {next(self.numbers)}",
                                                          "channel": "sandbox"}).json()
        self.wait(lambda: self.call("GET", f"/whatsapp/{connection['id']}").json()["status"] == "qrcode",
                  "the sandbox connection's QR code")
        self.call("POST", f"/sandbox/{connection['id']}/pair", json={})
        self.wait(lambda: self.call("GET", f"/whatsapp/{connection['id']}").json()["status"] == "CONNECTED",
                  "the sandbox connection to pair")
        return connection

    def new_ticket(self, accept: bool = True) -> dict[str, Any]:
        number = f"55119{next(self.numbers) + 80000000:08d}"
        self.call("POST", f"/sandbox/{self.ids['whatsapp']}/inbound",
                  json={"from": number, "name": f"Customer {number[-4:]}", "body": "hello"})

        def find() -> dict[str, Any] | None:
            found = self.call("GET", "/tickets", params={"searchParam": number, "status": "pending"}).json()
            return found["tickets"][0] if found["tickets"] else None

        ticket = self.wait(find, f"a ticket for {number}")
        if accept:
            self.call("PUT", f"/tickets/{ticket['id']}", json={"status": "open", "userId": self.ids["me"]})
        return ticket

    def new_contact(self) -> int:
        number = f"55118{next(self.numbers) + 70000000:08d}"
        return self.call("POST", "/contacts", json={"name": f"Fresh {number[-4:]}", "number": number}).json()["id"]

    def new_queue(self) -> int:
        return self.call("POST", "/queue", json={"name": f"Fresh queue {next(self.numbers)}",
                                                 "color": "#123456"}).json()["id"]

    def new_user(self) -> int:
        n = next(self.numbers)
        return self.call("POST", "/users", json={"name": f"Fresh {n}", "email": f"fresh{n}@contract.example",
                                                 "password": "fresh-pass-1", "profile": "user"}).json()["id"]

    def new_tag(self) -> int:
        return self.call("POST", "/tags", json={"name": f"Fresh tag {next(self.numbers)}", "color": "#1273DE",
                                                "kanban": 0}).json()["id"]

    def new_chat(self) -> int:
        """An internal chat of the admin with the world's agent."""
        return self.call("POST", "/chats", json={"title": f"Fresh chat {next(self.numbers)}",
                                                 "users": [{"id": self.ids["users"]}]}).json()["id"]

    def new_option(self) -> int:
        """A first-level option of the world's queue (its menu)."""
        return self.call("POST", "/queue-options", json={"queueId": self.ids["queue"], "title": "Fresh option",
                                                         "option": str(next(self.numbers))}).json()["id"]

    def new_quick_message(self) -> int:
        """A quick message of the admin's."""
        return self.call("POST", "/quick-messages", json={"shortcode": f"fresh{next(self.numbers)}",
                                                          "message": "Olá {{name}}"}).json()["id"]

    def new_ticket_note(self) -> int:
        """A note of the admin's on the world's ticket."""
        return self.call("POST", "/ticket-notes", json={"note": f"Fresh note {next(self.numbers)}",
                                                        "ticketId": self.ids["tickets"]}).json()["id"]

    def new_contact_list(self) -> int:
        return self.call("POST", "/contact-lists", json={"name": f"Fresh list {next(self.numbers)}"}).json()["id"]

    def new_contact_list_item(self) -> int:
        """An item of the world's contact list."""
        n = next(self.numbers)
        return self.call("POST", "/contact-list-items", json={
            "contactListId": self.ids["contact-lists"], "name": f"Fresh item {n}",
            "number": f"55119{n:08d}"}).json()["id"]

    def new_schedule(self) -> int:
        """A message scheduled a day ahead to a fresh contact."""
        return self.call("POST", "/schedules", json={"body": f"Fresh schedule {next(self.numbers)}",
                                                     "contactId": self.new_contact(),
                                                     "sendAt": future_send_at()}).json()["id"]

    def new_campaign(self) -> int:
        """A draft campaign to the world's contact list on the world's connection."""
        return self.call("POST", "/campaigns", json={
            "name": f"Fresh campaign {next(self.numbers)}", "whatsappId": self.ids["whatsapp"],
            "contactListId": self.ids["contact-lists"], "message1": "Olá {{name}}"}).json()["id"]

    def fresh(self, resource: str) -> Any:
        """A new resource of the kind a path segment names (its id; a ticket's id for `messages`)."""
        if resource in ("tickets", "messages"):
            return self.new_ticket()["id"]
        if resource in ("whatsapp", "whatsappsession", "sandbox"):
            return self.new_connection()["id"]
        if resource == "companies":  # the admin's own (a company's schedules)
            return self.ids["company"]
        return {"contacts": self.new_contact, "queue": self.new_queue, "users": self.new_user, "tags": self.new_tag,
                "chats": self.new_chat, "queue-options": self.new_option, "quick-messages": self.new_quick_message,
                "ticket-notes": self.new_ticket_note, "contact-lists": self.new_contact_list,
                "contact-list-items": self.new_contact_list_item, "schedules": self.new_schedule,
                "campaigns": self.new_campaign}[resource]()


@pytest.fixture(scope="module")
def live(pg_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """`zapgate serve` on a fresh database, sandbox on, FRONTEND_URL the walk's origin."""
    name = _new_database(pg_server_url, template_database)
    from psycopg.conninfo import make_conninfo

    tmp = tmp_path_factory.mktemp("contract")
    process = start_zapgate(["serve"], {
        "DATABASE_URL": url_of(make_conninfo(pg_server_url, dbname=name)), "ZAPGATE_DATA_DIR": str(tmp / "data"),
        "BCRYPT_ROUNDS": "4", "ADMIN_PASSWORD": ADMIN_PASSWORD, "FRONTEND_URL": FRONTEND,
        "ZAPGATE_SANDBOX": "on", "DEFAULT_CHANNEL": "sandbox", "LOG_LEVEL": "warning"}, tmp)
    try:
        process.wait_healthy()
        yield process
    finally:
        process.terminate(30)
        with _admin_conn(pg_server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def world(live: Process) -> Iterator[World]:
    with httpx.Client(base_url=live.url.replace("127.0.0.1", "localhost"), timeout=30) as client:
        login = client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        me = login.json()["user"]
        world = World(client, login.json()["token"], {"me": me["id"], "company": me["companyId"]})
        world.ids["queue"] = world.new_queue()
        world.ids["queue-options"] = world.new_option()
        world.ids["plan"] = world.call("GET", f"/companies/{me['companyId']}").json()["planId"]
        world.ids["users"] = world.new_user()
        world.ids["tags"] = world.new_tag()
        world.ids["chats"] = world.new_chat()
        connection = world.new_connection()
        world.ids["whatsapp"] = connection["id"]
        ticket = world.new_ticket()
        world.ids.update(tickets=ticket["id"], uuid=ticket["uuid"], contacts=ticket["contactId"])
        world.ids["contact_number"] = ticket["contact"]["number"]
        world.ids["quick-messages"] = world.new_quick_message()
        world.ids["ticket-notes"] = world.new_ticket_note()
        world.ids["contact-lists"] = world.new_contact_list()
        world.ids["schedules"] = world.new_schedule()
        world.ids["campaigns"] = world.new_campaign()
        yield world
