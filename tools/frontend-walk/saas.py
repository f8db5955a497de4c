"""The SaaS lineage's frontend (eltonciatto/whaticket-saas, folder frontend/ and its forks), walked in order.

Its backend URL is fixed at build time (`REACT_APP_BACKEND_URL`), so `config_json` is not read by it.
Labels are its Portuguese/English mix as rendered with the browser's en-US locale.
"""

from __future__ import annotations

from urllib.parse import SplitResult

from walk import Walk


def config_json(api: SplitResult) -> dict[str, str]:
    return {}  # built in: REACT_APP_BACKEND_URL


def walk(w: Walk, only: set[str] | None) -> None:
    page = w.page
    with w.screen("login", settle=False):
        w.submit_login()
    with w.screen("dashboard (where login lands)", core=False):
        page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
        w.settle()
    for name, path in VISITS:
        if only is None or name in only:
            with w.screen(name):
                w.goto(path)
    for name, path in LATER:
        if only is None or name in only:
            with w.screen(name, core=False):
                w.goto(path)


VISITS = [
    ("tickets", "/tickets"),
    ("connections", "/connections"),
    ("contacts", "/contacts"),
    ("queues", "/queues"),
    ("users", "/users"),
    ("settings", "/settings"),
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
