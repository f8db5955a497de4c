"""The HTML of the runtime view (api/runtime_view.py): one server-rendered page, no build step.

`render(view, nonce=…)` turns the view's JSON into a page a person reads at a glance — a row of figures
(sessions, conversations, campaigns, timers due, database pool, sockets, restarts), then the supervision
tree: the root supervisor and its children, the nested supervisors (sessions by connection, conversations
per company, campaigns) with their restarts, crash loops (red) and mailbox depths, the timers by kind,
and any section a later part added. `sign_in(nonce=…)` is the same page with a sign-in form instead of data.
Every value is escaped; the page's one script and one style block carry the response's CSP nonce.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

REFRESH_SECONDS = 5
KNOWN_SECTIONS = {"generatedAt", "version", "pid", "startedAt", "uptimeSeconds", "supervision", "database", "broker",
                  "timers"}

STYLE = """
:root { font: 14px/1.4 system-ui, sans-serif; color: #1d2733; background: #f4f6f8; }
body { margin: 0; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .8em 1.2em; background: #1d2733; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; } header span { opacity: .85; } #status { margin-left: auto; }
#facts { display: flex; gap: 1.5em; }
main { padding: 1em 1.2em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(11em, 1fr)); gap: .8em;
         margin-bottom: 1.2em; }
.card { background: #fff; border-radius: 6px; padding: .7em .9em; box-shadow: 0 1px 2px #0002; }
.card b { display: block; font-size: 1.7em; } .card small { color: #5a6775; }
section { background: #fff; border-radius: 6px; padding: .6em .9em 1em; margin-bottom: 1em;
          box-shadow: 0 1px 2px #0002; }
h2 { font-size: 1.05em; margin: .3em 0 .6em; } h3 { font-size: .95em; margin: .9em 0 .4em; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .25em .6em; border-bottom: 1px solid #e3e7eb; }
th { font-weight: 600; color: #5a6775; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; background: #e3e7eb; }
.ok { background: #d4f5dd; color: #0b5c23; } .warn { background: #fff0c2; color: #7a5200; }
.bad { background: #ffd6d6; color: #9b1111; }
.nested { margin: .4em 0 .4em 1.6em; padding-left: .8em; border-left: 3px solid #c9d2db; }
.muted { color: #5a6775; } form { display: grid; gap: .6em; max-width: 22em; }
input, button { font: inherit; padding: .4em; }
"""

SCRIPT = r"""
(() => {
  const KEY = "zapgate.runtime.token", status = document.getElementById("status");
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const say = (text) => { status.textContent = text; };
  async function renew() {
    const answer = await fetch("/auth/refresh_token", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: "{}"});
    if (!answer.ok) return false;
    sessionStorage.setItem(KEY, (await answer.json()).token);
    return true;
  }
  async function load(again = true) {
    const token = sessionStorage.getItem(KEY);
    if (!token) return;
    const answer = await fetch(location.pathname + "?format=html", {cache: "no-store", credentials: "same-origin",
      headers: {"Authorization": "Bearer " + token, "Accept": "text/html"}});
    if (answer.status === 401 || answer.status === 403) {
      const error = (await answer.json().catch(() => ({}))).error;
      if (error !== "ERR_NO_PERMISSION" && again && await renew()) return load(false);
      sessionStorage.removeItem(KEY);
      say(error === "ERR_NO_PERMISSION" ? "this view needs a super admin" : "signed out: sign in again");
      return;
    }
    if (!answer.ok) { say("not updated: HTTP " + answer.status); return; }
    // only its header facts and <main> are taken: its style and script (another nonce) are not parsed at all
    const html = (await answer.text()).replace(/<style[\s\S]*?<\/style>|<script[\s\S]*?<\/script>/g, "");
    const page = new DOMParser().parseFromString(html, "text/html");
    document.querySelector("main").replaceWith(page.querySelector("main"));
    document.getElementById("facts").replaceWith(page.getElementById("facts"));
    say("updated " + new Date().toLocaleTimeString());
  }
  const form = document.getElementById("signin");
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await fetch("/auth/login", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({email: form.email.value, password: form.password.value})});
    if (!answer.ok) { say("sign-in refused"); return; }
    sessionStorage.setItem(KEY, (await answer.json()).token);
    load();
  });
  load().catch((error) => say("not updated: " + error));
  setInterval(() => load().catch((error) => say("not updated: " + error)), %REFRESH% * 1000);
})();
""".replace("%REFRESH%", str(REFRESH_SECONDS))


def sign_in(*, nonce: str) -> str:
    main = ("<section><h2>Sign in as a super admin</h2><form id=\"signin\">"
            "<input name=\"email\" type=\"email\" placeholder=\"email\" autocomplete=\"username\" required>"
            "<input name=\"password\" type=\"password\" placeholder=\"password\" autocomplete=\"current-password\" "
            "required><button>Sign in</button></form></section>")
    return _document(nonce, "", main)


def render(view: Mapping[str, Any], *, nonce: str) -> str:
    tree = view["supervision"]
    facts = (f"<span>v{escape(str(view['version']))}</span><span>pid {view['pid']}</span>"
             f"<span>up {_duration(view['uptimeSeconds'])}</span><span>at {escape(view['generatedAt'])}</span>")
    parts = [_cards(view), "<section><h2>Supervision tree</h2>", _supervisor_box(tree, tree["children"]), "</section>",
             _timers(view.get("timers") or {})]
    for name, value in view.items():
        if name not in KNOWN_SECTIONS:
            parts.append(f"<section><h2>{escape(name)}</h2>{_any(value)}</section>")
    return _document(nonce, facts, "".join(parts))


def _document(nonce: str, facts: str, main: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>zapgate runtime</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style nonce=\"{nonce}\">{STYLE}</style></head><body><header><h1>zapgate runtime</h1>"
            f"<span id=\"facts\">{facts}</span>"
            f"<span id=\"status\">refreshes every {REFRESH_SECONDS}s</span></header><main>{main}</main>"
            f"<script nonce=\"{nonce}\">{SCRIPT}</script></body></html>")


# ── the figures at a glance ──

def _cards(view: Mapping[str, Any]) -> str:
    children = {child["id"]: child.get("detail") or {} for child in view["supervision"]["children"]}
    sessions = children.get("sessions", {}).get("sessions", [])
    tickets = children.get("tickets", {})
    pool = view["database"]["pool"]
    timers = view.get("timers") or {}
    restarts = view["supervision"]["restartsTotal"] + sum(
        (detail.get("supervisor") or {}).get("restartsTotal", 0) for detail in children.values())
    looping = [child["id"] for child in view["supervision"]["children"] if _looping(child)]
    connected = sum(1 for s in sessions if s["status"] == "CONNECTED")
    cards = [
        ("sessions", f"{connected}/{len(sessions)}", "connected / running",
         "ok" if connected == len(sessions) else "warn"),
        ("conversations", tickets.get("alive", 0), f"actors alive; {tickets.get('mailboxWaiting', 0)} waiting", ""),
        ("campaigns", len(children.get("campaigns", {}).get("campaigns", [])), "running", ""),
        ("timers due", timers.get("due", "?"), f"{timers.get('pending', '?')} pending, {timers.get('claimed', '?')} "
                                               "claimed", "warn" if timers.get("due") else ""),
        ("database", f"{max(0, pool['size'] - pool['available'])}/{pool['size']}",
         f"connections in use (max {pool['max']}; {pool['waiting']} waiting)",
         "bad" if view["database"]["health"]["status"] != "up" else ""),
        ("sockets", children.get("realtime", {}).get("sockets", 0), "realtime clients", ""),
        ("restarts", restarts, "by every supervisor", "warn" if restarts else ""),
        ("crash loops", len(looping), ", ".join(looping) or "none", "bad" if looping else "ok"),
    ]
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card {tone}\"><small>{escape(title)}</small><b>{escape(str(value))}</b>"
        f"<small>{escape(str(note))}</small></div>" for title, value, note, tone in cards) + "</div>"


def _looping(child: Mapping[str, Any]) -> bool:
    nested = (child.get("detail") or {}).get("supervisor") or {}
    return bool(child.get("crashLooping") or nested.get("crashLoop"))


# ── the tree ──

def _supervisor_box(stats: Mapping[str, Any], children: Iterable[Mapping[str, Any]] | None = None) -> str:
    if not stats.get("running", True) and "name" not in stats:
        return "<p class=\"muted\">not running</p>"
    tone = "bad" if stats.get("crashLoop") else "ok"
    head = (f"<p><b>supervisor {escape(str(stats.get('name', '?')))}</b> "
            f"<span class=\"badge {tone}\">{'crash loop' if stats.get('crashLoop') else 'healthy'}</span> "
            f"restarts {stats.get('restartsTotal', 0)}{_recent(stats)}, "
            f"given up {stats.get('givenUpTotal', 0)}{_given_up(stats)}</p>")
    if children is None:
        return head
    rows = []
    for child in children:
        detail = child.get("detail") or {}
        nested_loop = ((detail.get("supervisor") or {}).get("crashLoop") and
                       " <span class=\"badge bad\">children crash-looping</span>") or ""
        rows.append(f"<tr><td>{escape(child['id'])}</td><td>{_state(child['state'], child['crashLooping'])}"
                    f"{nested_loop}</td>"
                    f"<td class=\"n\">{child['restarts']}</td><td>{_summary(child['id'], detail)}</td></tr>")
        nested = _nested(child["id"], detail)
        if nested:
            rows.append(f"<tr><td colspan=\"4\"><div class=\"nested\">{nested}</div></td></tr>")
    return head + ("<table><tr><th>child</th><th>state</th><th>restarts</th><th>figures</th></tr>"
                   + "".join(rows) + "</table>")


def _recent(stats: Mapping[str, Any]) -> str:
    recent = stats.get("restartsRecent", 0)
    return f" ({recent} recently, against its own budget)" if recent else ""


def _given_up(stats: Mapping[str, Any]) -> str:
    recent = stats.get("givenUpRecent") or []
    return f" — recently: {escape(', '.join(recent[:5]))}" if recent else ""


def _state(state: str, looping: bool = False) -> str:
    tone = "bad" if looping else {"running": "ok", "restarting": "warn", "starting": "warn"}.get(state, "")
    label = f"{state}, crash-looping" if looping else state
    return f"<span class=\"badge {tone}\">{escape(label)}</span>"


def _summary(name: str, detail: Mapping[str, Any]) -> str:
    """One line of figures for a root child."""
    if name == "writer":
        return (f"queue {detail.get('queued', 0)}/{detail.get('queueSize', 0)}, {detail.get('flushes', 0)} flushes, "
                f"mean batch {detail.get('mean_batch', 0)}")
    if name == "scheduler":
        return (f"backlog {detail.get('backlog')}, fired {detail.get('fired', 0)}, failed {detail.get('failed', 0)}, "
                f"overdue {round(detail.get('overdueSeconds', 0), 1)}s, "
                f"next due {escape(detail.get('next_due_at') or '—')}")
    if name == "number-check":
        mailbox = detail.get("mailbox") or {}
        return f"mailbox {mailbox.get('depth', 0)}/{mailbox.get('size', 0)}, {detail.get('steps', 0)} steps"
    if name == "tickets":
        return f"{detail.get('alive', 0)} actors alive, {detail.get('mailboxWaiting', 0)} messages waiting"
    if name == "sessions":
        return f"{len(detail.get('sessions', []))} sessions"
    if name == "campaigns":
        return f"{len(detail.get('campaigns', []))} campaigns running"
    if name == "realtime":
        return f"{detail.get('sockets', 0)} sockets, {detail.get('sessions', 0)} sessions"
    if name == "live":
        broker = detail.get("broker") or {}
        return f"{broker.get('subscribers', 0)} subscribers, {broker.get('lagged', 0)} lagged"
    return ""


def _nested(name: str, detail: Mapping[str, Any]) -> str:
    supervisor = detail.get("supervisor")
    if supervisor is None:
        return ""
    box = _supervisor_box(supervisor)
    if name == "sessions":
        rows = [[s["whatsappId"], s["companyId"], _status(s["status"]), _state(s["state"], s["crashLooping"]),
                 s["restarts"], f"{s['mailbox']['depth']}/{s['mailbox']['size']}"] for s in detail.get("sessions", [])]
        return box + _table(["connection", "company", "status", "state", "restarts", "mailbox"], rows, raw={2, 3})
    if name == "tickets":
        by_company = [[company, count] for company, count in (detail.get("byCompany") or {}).items()]
        deepest = [[d["whatsappId"], d["chat"], d["companyId"], f"{d['depth']}/{detail.get('mailboxSize')}"]
                   for d in detail.get("deepestMailboxes", [])]
        looping = [[c["whatsappId"], c["chat"], _state(c["state"], True), c["restarts"]]
                   for c in detail.get("crashLooping", [])]
        if not by_company and not looping:
            return box + "<p class=\"muted\">no actors alive</p>"
        return (box + "<h3>actors per company</h3>" + _table(["company", "actors"], by_company)
                + ("<h3>deepest mailboxes</h3>" + _table(["connection", "chat", "company", "mailbox"], deepest)
                   if deepest else "")
                + ("<h3>crash-looping</h3>" + _table(["connection", "chat", "state", "restarts"], looping, raw={2})
                   if looping else ""))
    if name == "campaigns":
        rows = [[c["campaignId"], c["companyId"], _state(c["state"], c["crashLooping"]), c["restarts"], c["inFlight"]]
                for c in detail.get("campaigns", [])]
        return box + _table(["campaign", "company", "state", "restarts", "sends in flight"], rows, raw={2})
    return box


def _status(status: str | None) -> str:
    tone = {"CONNECTED": "ok", "DISCONNECTED": "bad", "TIMEOUT": "bad"}.get(status or "", "warn")
    return f"<span class=\"badge {tone}\">{escape(str(status))}</span>"


def _timers(timers: Mapping[str, Any]) -> str:
    if "error" in timers:
        return f"<section><h2>Timers</h2><p class=\"bad\">{escape(timers['error'])}</p></section>"
    rows = [[k["kind"], k["pending"], k["due"], k["claimed"], k["nextDueAt"] or "", k["oldestClaimAt"] or ""]
            for k in timers.get("byKind", [])]
    return ("<section><h2>Timers</h2>"
            + _table(["kind", "pending", "due now", "claimed", "next due", "oldest claim"], rows) + "</section>")


def _table(headers: list[str], rows: list[list[Any]], *, raw: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    """A table; the columns in `raw` hold HTML made here (badges), every other cell is escaped."""
    if not rows:
        return "<p class=\"muted\">none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td>{cell}</td>" if i in raw else
        f"<td class=\"n\">{cell}</td>" if isinstance(cell, int | float) else f"<td>{escape(str(cell))}</td>"
        for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _any(value: Any) -> str:
    """A section of a later part: a table of its figures, or its JSON."""
    if isinstance(value, Mapping) and all(not isinstance(v, Mapping | list) for v in value.values()):
        return _table(["figure", "value"], [[k, v] for k, v in value.items()])
    return f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m {seconds}s"
