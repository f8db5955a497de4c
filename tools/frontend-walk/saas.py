"""The SaaS lineage's frontend (eltonciatto/whaticket-saas, folder frontend/ and its forks), walked in order.

Its backend URL is fixed at build time (`REACT_APP_BACKEND_URL`), so `config_json` is not read by it.
Labels are its Portuguese/English mix as rendered with the browser's en-US locale.
"""

from __future__ import annotations

import time
from urllib.parse import SplitResult

from walk import Walk


def config_json(api: SplitResult) -> dict[str, str]:
    return {}  # built in: REACT_APP_BACKEND_URL


CUSTOMER = "5511987650101"
CUSTOMER_NAME = "Walk SaaS Customer"


def walk(w: Walk, only: set[str] | None) -> None:
    state: dict = {"stamp": time.strftime("%H%M%S")}
    with w.screen("login", settle=False):
        w.submit_login()
    with w.screen("dashboard (where login lands)", core=False):
        w.page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
        w.settle()
    with w.screen("reload stays logged in"):
        w.goto("/tickets")
        w.page.reload()
        w.settle()
        if "/login" in w.page.url:
            raise AssertionError("a reload went back to the login page")
    w.run_screens(SCREENS, VISITS, LATER, state, only)
    if only is None or "idle past the token's life" in only:
        with w.screen("idle past the token's life"):
            idle_past_token_life(w, state)


def connections(w: Walk, state: dict) -> None:
    """Add a connection, see its QR code, pair it from the sandbox API, see it connected live."""
    page = w.page
    name = f"Walk SaaS {state['stamp']}"
    w.goto("/connections")
    page.get_by_role("button", name="Add WhatsApp").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=name]").fill(name)
    dialog.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text(name).first.wait_for()
    connection = w.wait_for(lambda: next((c for c in w.backend("GET", "/whatsapp").json() if c["name"] == name),
                                         None), what="the new connection")
    state["whatsappId"] = connection["id"]
    w.wait_for(lambda: w.backend("GET", f"/whatsapp/{connection['id']}").json()["status"] == "qrcode",
               what="its QR code")
    w.backend("POST", f"/sandbox/{connection['id']}/pair", json={})
    page.get_by_role("button", name="Disconnect").first.wait_for(timeout=20_000)  # CONNECTED, live


def tickets_and_chat(w: Walk, state: dict) -> None:
    """A customer writes: the ticket appears live in the queue tab; accept, send, receive one live."""
    page = w.page
    w.goto("/tickets")
    w.backend("POST", f"/sandbox/{state['whatsappId']}/inbound",
              json={"from": CUSTOMER, "name": CUSTOMER_NAME, "body": f"Hello SaaS {state['stamp']}"})
    page.get_by_role("tab", name="Queue").click()
    page.get_by_text(CUSTOMER_NAME).first.wait_for(timeout=20_000)
    # the list item's overlay takes the pointer over its buttons: a click event, as React sees it
    with page.expect_response(lambda r: "/tickets/" in r.url and r.request.method == "PUT") as accepted:
        item = page.locator(".MuiListItem-root", has_text=CUSTOMER_NAME).first
        item.get_by_text("Accept", exact=True).evaluate("el => el.closest('button').click()")
    if accepted.value.status != 200:
        raise AssertionError(f"accepting answered {accepted.value.status}")
    page.wait_for_function("location.pathname.startsWith('/tickets/')")
    w.settle()
    box = page.get_by_placeholder("Type a message").first
    box.wait_for()
    text = f"Reply SaaS {state['stamp']}"
    box.fill(text)
    box.press("Enter")
    page.get_by_text(text).locator("visible=true").first.wait_for()
    w.wait_for(lambda: text in w.backend("GET", f"/sandbox/{state['whatsappId']}/outbox").text,
               what="the reply in the sandbox outbox")
    live = f"Live SaaS {state['stamp']}"
    w.backend("POST", f"/sandbox/{state['whatsappId']}/inbound", json={"from": CUSTOMER, "body": live})
    page.get_by_text(live).locator("visible=true").first.wait_for(timeout=20_000)  # in the chat, not the list


def idle_past_token_life(w: Walk, state: dict) -> None:
    """Wait longer than the access token lives (start zapgate with ACCESS_TOKEN_TTL=60 for this): the frontend
    refreshes it on the family's 403 and the user stays logged in, the socket too."""
    page = w.page
    w.goto("/tickets")
    w.expect("*", "*", 403)  # the expired token's answers: the frontend refreshes on them (the family's rule)
    page.wait_for_timeout(75_000)
    with page.expect_response(lambda r: "/contacts" in r.url and r.request.method == "GET") as listed:
        w.goto("/contacts")
    if "/login" in page.url:
        raise AssertionError("logged out after the access token expired")
    if listed.value.status != 200:
        raise AssertionError(f"GET /contacts answered {listed.value.status} after the idle wait")


def companies_and_plans(w: Walk, state: dict) -> None:
    """The super admin's tabs of the settings page: companies (with their plans) and plans."""
    page = w.page
    w.goto("/settings")
    for tab, shown in (("Empresas", "Default"), ("Planos", "Unlimited")):
        page.get_by_role("tab", name=tab).click()
        w.settle()
        page.get_by_text(shown, exact=True).locator("visible=true").first.wait_for()
        page.screenshot(path=str(w.out / f"settings-{tab.lower()}.png"))


SCREENS = [
    ("connections", connections),
    ("tickets and chat", tickets_and_chat),
    ("companies and plans", companies_and_plans),
]


VISITS = [  # served screens visited (their lists load, no failure); the actions above cover the core flows
    ("contacts", "/contacts"),
    ("queues", "/queues"),
    ("users", "/users"),
    ("tags", "/tags"),
    ("kanban", "/kanban"),
    ("internal chat", "/chats"),
    ("helps", "/helps"),
    ("announcements", "/announcements"),
    ("files", "/files"),
    ("financeiro", "/financeiro"),
]

LATER = [
    ("quick messages", "/quick-messages"),
    ("schedules", "/schedules"),
    ("todo list", "/todolist"),
    ("prompts", "/prompts"),
    ("queue integration", "/queue-integration"),
    ("messages api", "/messages-api"),
    ("contact lists", "/contact-lists"),
    ("campaigns", "/campaigns"),
    ("campaigns config", "/campaigns-config"),
]

LATER_ROUTES = {
    "/dashboard": "issue 17 (dashboard and reports)",
    "/quick-messages": "issue 13 (quick messages)",
    "/ticket-notes": "issue 13 (ticket notes)",
    "/schedules": "issue 13 (scheduled messages)",
    "/contact-lists": "issue 13 (contact lists)",
    "/contact-list-items": "issue 13 (contact lists)",
    "/campaigns": "issue 14 (campaigns)",
    "/campaign-settings": "issue 14 (campaigns)",
    "/queue-options": "issue 12 (queues that route)",
    "/prompt": "issue 16 (bots; withdrawn for now)",
    "/queueIntegration": "issue 16 (bots; withdrawn for now)",
    "/flowbuilder": "issue 15 (flows; withdrawn for now)",
}
