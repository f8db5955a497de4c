"""`GET /admin/runtime` (issue 18, point 3): the supervision tree as JSON and as a page, reflecting a sandbox
session made to crash-loop (the sandbox's test-only "crash" fault) with its restart count; super admins only.

The page is also opened in a real browser: headless Chromium gets `/admin/runtime` with a super admin's token in
the URL's fragment, the page's script fetches the rendered view and swaps it in, and the screenshot shows it.
Skipped without Chromium, except with CI=true, where Chromium is mandatory. ZAPGATE_SCREENSHOT_DIR keeps the
screenshot."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image, ImageStat

from storage import timers
from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox
from tests.integration.test_metrics import scrape, value

TIMEOUT = 60
SCREENSHOT_TIMEOUT = 90


@pytest.fixture
async def crashable(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    """The app with the sandbox's crash fault enabled (SANDBOX_CRASH_FAULTS=on)."""
    srv = await start_server(nursery, make_config(tmp_path, database_url, sandbox_crash_faults=True))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


@pytest.fixture
async def capi(crashable: Server) -> AsyncIterator[Api]:
    import httpx

    async with httpx.AsyncClient(base_url=crashable.url, timeout=10) as client:
        yield Api(client, crashable)


async def view(api: Api, token: str) -> dict[str, Any]:
    response = await api.client.get("/admin/runtime", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def child(tree: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in tree["supervision"]["children"] if c["id"] == name)


def session_of(tree: dict[str, Any], wid: int) -> dict[str, Any] | None:
    sessions = child(tree, "sessions")["detail"]["sessions"]
    return next((s for s in sessions if s["whatsappId"] == wid), None)


async def wait_view(api: Api, token: str, check: Any, what: str) -> dict[str, Any]:
    while True:
        tree = await view(api, token)
        if check(tree):
            return tree
        await trio.sleep(0.05)


async def test_the_view_shows_a_crash_looping_session_and_its_restarts(capi: Api, crashable: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await capi.admin_token()
        wid = await connected_sandbox(capi, token)
        calm = await view(capi, token)
        assert session_of(calm, wid) == {"whatsappId": wid, "companyId": 1, "status": "CONNECTED", "state": "running",
                                         "restarts": 0, "crashLooping": False, "mailbox": {"depth": 0, "size": 64}}
        assert child(calm, "sessions")["detail"]["supervisor"]["crashLoop"] is False
        assert {c["id"] for c in calm["supervision"]["children"]} >= {
            "writer", "scheduler", "number-check", "tickets", "campaigns", "sessions", "realtime", "live"}

        # three crashes in a row (within the session's own budget of 5 a minute): restarted each time
        fault = await capi.client.post(f"/sandbox/{wid}/fault", json={"kind": "crash", "count": 3},
                                       headers=auth(token))
        assert fault.status_code == 200, fault.text
        looping = await wait_view(capi, token, lambda t: (session_of(t, wid) or {}).get("restarts") == 3
                                  and session_of(t, wid)["status"] == "CONNECTED", "three restarts, connected again")
        shown = session_of(looping, wid)
        assert shown is not None and shown["crashLooping"] is True and shown["state"] == "running"
        supervisor = child(looping, "sessions")["detail"]["supervisor"]
        assert supervisor["restartsTotal"] == 3 and supervisor["crashLoop"] is True
        assert supervisor["givenUpTotal"] == 0
        assert child(looping, "sessions")["state"] == "running"  # the crashes never reached the root
        assert looping["supervision"]["restartsTotal"] == 0
        samples = await scrape(capi.client)
        assert value(samples, "zapgate_supervisor_restarts_total", supervisor="sessions") == 3
        assert value(samples, "zapgate_supervisor_crash_loop", supervisor="sessions") == 1
        assert value(samples, "zapgate_supervisor_restarts_total", supervisor="root") == 0

        # and a crash loop past the budget: the session is given up, the view says so
        await capi.client.post(f"/sandbox/{wid}/fault", json={"kind": "crash", "count": 50}, headers=auth(token))
        gone = await wait_view(capi, token, lambda t: session_of(t, wid) is None, "the session given up")
        supervisor = child(gone, "sessions")["detail"]["supervisor"]
        assert supervisor["givenUpTotal"] == 1 and supervisor["crashLoop"] is True
        assert any(f"'session', {wid}," in given for given in supervisor["givenUpRecent"])


async def test_the_crash_fault_is_off_unless_enabled(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        refused = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "crash"}, headers=auth(token))
        assert refused.status_code == 400
        assert refused.json()["error"] == "ERR_SANDBOX_CRASH_DISABLED"
        tree = await view(api, token)
        assert session_of(tree, wid)["restarts"] == 0 and session_of(tree, wid)["status"] == "CONNECTED"


async def test_the_view_counts_conversations_per_company_and_timers_due(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        assert server.deps.sandbox is not None
        for sender in ("5511955550001", "5511955550002"):
            await server.deps.sandbox.inbound(wid, sender=sender, body="oi")
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        for key in ("a", "b"):  # a kind nobody handles: due, and left pending
            await server.deps.db.run(partial(timers.schedule, company_id=1, kind="test.unhandled", key=key,
                                             due_at=past, payload={}))
        tree = await wait_view(api, token, lambda t: child(t, "tickets")["detail"]["alive"] == 2, "two actors")
        assert child(tree, "tickets")["detail"]["byCompany"] == {"1": 2}
        kinds = {k["kind"]: k for k in tree["timers"]["byKind"]}
        assert kinds["test.unhandled"]["pending"] == 2 and kinds["test.unhandled"]["due"] == 2
        assert tree["timers"]["due"] >= 2
        assert tree["database"]["pool"]["max"] == server.config.db_pool_max
        assert child(tree, "writer")["detail"]["queueSize"] > 0


async def test_only_a_super_admin_sees_it(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        super_token = await api.admin_token()
        company = await api.create_company(super_token, "Acme", "admin@acme.test", "acme-pass-1")
        assert company["id"] != 1
        admin_token = await api.login("admin@acme.test", "acme-pass-1")
        for accept in ("application/json", "text/html"):
            refused = await api.client.get("/admin/runtime", headers={**auth(admin_token), "Accept": accept})
            assert refused.status_code == 403, accept
            assert refused.json()["error"] == "ERR_NO_PERMISSION"
            assert "supervision" not in refused.text
        anonymous = await api.client.get("/admin/runtime")
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "ERR_SESSION_EXPIRED"
        anonymous = await api.client.get("/admin/runtime?format=json")
        assert anonymous.status_code == 401


async def test_browsers_get_the_page_and_programs_get_json(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
        # no token yet: the sign-in page, and nothing of the runtime in it
        shell = await api.client.get("/admin/runtime", headers=browser)
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        assert 'id="signin"' in shell.text and "Supervision tree" not in shell.text
        page = await api.client.get("/admin/runtime", headers={**browser, **auth(token)})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Supervision tree" in page.text and "supervisor sessions" in page.text
        assert f"<td class=\"n\">{wid}</td>" in page.text  # the session's row
        policy = page.headers["content-security-policy"]
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in page.text and "unsafe-inline" not in policy
        assert page.headers["cache-control"] == "no-store"
        as_json = await api.client.get("/admin/runtime?format=json", headers={**browser, **auth(token)})
        assert as_json.headers["content-type"].startswith("application/json") and "supervision" in as_json.json()
        forced = await api.client.get("/admin/runtime?format=html", headers=auth(token))
        assert forced.headers["content-type"].startswith("text/html")
        bad = await api.client.get("/admin/runtime?format=xml", headers=auth(token))
        assert bad.status_code == 400 and bad.json()["field"] == "format"


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOT_KEEP = os.environ.get("ZAPGATE_SCREENSHOT_DIR")  # keep the screenshot there, to look at it


def chromium_or_skip() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("Chromium is mandatory when CI=true (apt-get install -y chromium)")
    pytest.skip("no Chromium installed")


async def headless(chromium: str, profile: Path, url: str, *what: str) -> tuple[str, str]:
    """Run headless Chromium on `url` (its scripts and fetches included, within a virtual time budget): its
    output, and its log with the page's console messages."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", "--window-size=1280,1400", "--virtual-time-budget=15000",
               "--enable-logging=stderr", "--v=0", *what, url]
    done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    log = done.stderr.decode(errors="replace")
    assert done.returncode == 0, log[-2000:]
    return done.stdout.decode(errors="replace"), log


async def test_the_page_renders_in_headless_chromium(capi: Api, crashable: Server, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    with trio.fail_after(SCREENSHOT_TIMEOUT):
        token = await capi.admin_token()
        wid = await connected_sandbox(capi, token)
        # a session that crashed three times (crash-looping: more than half its budget of 5), connected again
        fault = await capi.client.post(f"/sandbox/{wid}/fault", json={"kind": "crash", "count": 3},
                                       headers=auth(token))
        assert fault.status_code == 200, fault.text
        while (session_of(await view(capi, token), wid) or {}).get("restarts") != 3:
            await trio.sleep(0.05)
        url = f"{crashable.url}/admin/runtime#token={token}"

        dom, log = await headless(chromium, tmp_path / "dom", url, "--dump-dom")
        console = [line for line in log.splitlines() if ":CONSOLE" in line]
        assert not console, console  # no script error, nothing the page's CSP refused
        # the script signed in with the fragment's token and swapped the rendered view in
        assert "Supervision tree" in dom and "supervisor sessions" in dom, dom[-3000:]
        assert "CONNECTED" in dom and f'<td class="n">{wid}</td>' in dom
        assert "running, crash-looping" in dom and "children crash-looping" in dom  # the session, its supervisor
        assert "pid " in dom  # the header's facts were swapped in too
        assert 'id="signin"' not in dom

        shot = tmp_path / "runtime.png"
        await headless(chromium, tmp_path / "shot", url, f"--screenshot={shot}")
        image = Image.open(shot).convert("RGB")
        assert image.size == (1280, 1400)
        colours = image.getcolors(maxcolors=1_000_000) or []
        assert len(colours) > 50, "a blank (or nearly blank) screenshot"
        header = ImageStat.Stat(image.crop((0, 0, 1280, 30))).mean  # the dark header bar was drawn
        assert max(header) < 100, header
        body = ImageStat.Stat(image.crop((0, 100, 1280, 1400))).stddev
        assert max(body) > 10, body  # text and tables, not a flat colour
        if SCREENSHOT_KEEP:  # to look at it
            await trio.Path(SCREENSHOT_KEEP).mkdir(parents=True, exist_ok=True)
            await trio.to_thread.run_sync(shutil.copy, shot, Path(SCREENSHOT_KEEP) / "runtime.png")
