"""Walk a Whaticket-family frontend build against a running zapgate, in headless Chromium, and report.

    python tools/frontend-walk/walk.py --build /path/to/frontend/build --api http://localhost:8080 \
        --out walk-out [--frontend ticketz] [--record tests/contract/walk_ticketz.json]

It serves the build (unmodified: `config.json` is answered by this server, pointing at `--api`) on
`http://localhost:PORT`, logs in, visits each screen of the frontend's script, does its actions, and writes
into `--out`:
- `report.json`: every backend request the page made (screen, method, URL, status, milliseconds), every
  console error and page exception, and per screen the figures (requests, failures, errors);
- `report.md`: the same as tables, for a closing note;
- `NN-screen.png`: a screenshot of each screen (and `NN-screen-FAILED.png` when its script raised).
With `--record` it also writes the request list the contract tests replay (tests/contract/): method, path
template, query, body, status and the fields of the answer the frontend rendered.

zapgate must run with `FRONTEND_URL=http://localhost:PORT` (the origin this tool serves the build on;
default port 3000) and the sandbox on; the tool checks both first and says what to fix. The exit status is
1 when a backend request failed or a console error is not an offline one (fonts, CDNs: no internet here).
"""

from __future__ import annotations

import argparse
import http.server
import importlib
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record import path_template, record_entries  # noqa: E402

OFFLINE_MARKERS = ("Error fetching countr", "net::ERR_NAME_NOT_RESOLVED", "net::ERR_INTERNET_DISCONNECTED",
                   "net::ERR_CONNECTION_REFUSED",
                   "fonts.googleapis", "fonts.gstatic", "cdn.jsdelivr", "ipinfo.io", "unpkg.com", "gravatar")


# --- serving the build ------------------------------------------------------------------------------------

def serve_build(build: Path, port: int, config: dict[str, str]) -> http.server.ThreadingHTTPServer:
    """Serve `build` on localhost:port; unknown paths get index.html (a single-page app), /config.json ours."""
    config_body = json.dumps(config).encode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(build), **kwargs)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/config.json":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(config_body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(config_body)
                return
            if not (build / path.lstrip("/")).is_file():
                if "." in path.rsplit("/", 1)[-1]:  # a file the build does not have: a 404, not the app
                    self.send_error(404)
                    return
                self.path = "/index.html"
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- what the page did ------------------------------------------------------------------------------------

class Recorder:
    """Backend requests and console errors, attributed to the screen being walked."""

    def __init__(self, api: str, later: dict[str, str] | None = None) -> None:
        self.api = api.rstrip("/")
        self.later = later or {}  # path template prefix → the issue that will serve it
        self.screen = "start"
        self.requests: list[dict[str, Any]] = []
        self.console: list[dict[str, Any]] = []
        self.sockets: list[dict[str, Any]] = []
        self.expected: set[tuple[str, str, str, int]] = set()  # (screen, method, path template, status)
        self.static_failures: list[dict[str, Any]] = []  # the build's own files (not the backend's doing)
        self._started: dict[int, float] = {}

    def is_backend(self, url: str) -> bool:
        return url.startswith(self.api + "/") or url == self.api

    def attach(self, page: Any) -> None:
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_finished)
        page.on("requestfailed", self._on_failed)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.on("websocket", self._on_websocket)

    def _on_request(self, request: Any) -> None:
        if self.is_backend(request.url):
            self._started[id(request)] = time.perf_counter()

    def _entry(self, request: Any) -> dict[str, Any]:
        started = self._started.pop(id(request), time.perf_counter())
        return {"screen": self.screen, "method": request.method, "url": request.url,
                "ms": round((time.perf_counter() - started) * 1000, 1), "requestBody": _json_or_none(request)}

    def _on_finished(self, request: Any) -> None:
        if not self.is_backend(request.url):
            response = request.response()
            if request.url.startswith("http://localhost") and response is not None and response.status >= 400:
                self.static_failures.append({"screen": self.screen, "url": request.url, "error": response.status})
            return
        if request.method == "OPTIONS":
            return
        entry = self._entry(request)
        response = request.response()
        entry["status"] = response.status if response else 0
        entry["responseBody"] = None
        if response is not None and "json" in (response.headers.get("content-type") or ""):
            try:
                entry["responseBody"] = response.json()
            except Exception:  # a body the browser no longer holds (redirects, aborted)
                entry["responseBody"] = None
        self.requests.append(entry)

    def _on_failed(self, request: Any) -> None:
        if not self.is_backend(request.url):
            if request.url.startswith("http://localhost"):
                self.static_failures.append({"screen": self.screen, "url": request.url, "error": request.failure})
            return
        entry = self._entry(request)
        entry["status"] = 0
        entry["error"] = request.failure
        # the page navigated away (the walk's next goto) while it was in flight: not the backend's doing
        entry["aborted"] = "ERR_ABORTED" in (request.failure or "")
        self.requests.append(entry)

    def _on_console(self, message: Any) -> None:
        if message.type not in ("error", "assert"):
            return
        location = message.location or {}
        text = message.text
        url = location.get("url", "")
        # a file of the build itself that failed to load (not every deployment ships every file): not the backend
        static = bool(url) and not self.is_backend(url) and "/static/js/" not in url and "Failed to load" in text
        self.console.append({"screen": self.screen, "kind": "console", "text": text[:2000], "url": url,
                             "offline": static or _offline(text, url)})

    def _on_pageerror(self, error: Any) -> None:
        text = f"{getattr(error, 'name', 'Error')}: {getattr(error, 'message', error)}"
        self.console.append({"screen": self.screen, "kind": "exception", "text": text[:2000], "url": "",
                             "offline": False})

    def _on_websocket(self, ws: Any) -> None:
        if not ws.url.startswith(self.api.replace("http", "ws", 1)):
            return
        entry: dict[str, Any] = {"screen": self.screen, "url": ws.url, "received": 0, "sent": 0, "events": []}
        self.sockets.append(entry)

        def received(payload: Any) -> None:
            entry["received"] += 1
            text = payload if isinstance(payload, str) else ""
            match = re.match(r'42(?:/[^,]*,)?\["([^"]+)"', text)
            if match and len(entry["events"]) < 200:
                entry["events"].append(match.group(1))

        ws.on("framereceived", received)
        ws.on("framesent", lambda _payload: entry.__setitem__("sent", entry["sent"] + 1))

    def later_issue(self, url: str) -> str | None:
        """The issue that will serve this backend URL, when it belongs to a feature zapgate lacks yet."""
        path = path_template(urlsplit(url).path)
        for prefix, issue in self.later.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return issue
        return None

    def failures(self, screen: str | None = None, *, later: bool = False) -> list[dict[str, Any]]:
        """Failed backend requests; those of later features only with `later` (and then only those)."""
        return [r for r in self.requests if (screen is None or r["screen"] == screen)
                and (r["status"] == 0 or r["status"] >= 400) and bool(self.later_issue(r["url"])) == later
                and not self.is_expected(r) and not r.get("aborted")]

    def is_expected(self, request: dict[str, Any]) -> bool:
        key = (request["screen"], request["method"], path_template(urlsplit(request["url"]).path), request["status"])
        return key in self.expected or (key[0], "*", "*", key[3]) in self.expected

    def errors(self, screen: str | None = None) -> list[dict[str, Any]]:
        """Console errors the backend may have caused: not offline noise, not a later feature's 404."""
        return [c for c in self.console if (screen is None or c["screen"] == screen) and not c["offline"]
                and not self._from_later(c)]

    def _from_later(self, entry: dict[str, Any]) -> bool:
        """A console error caused by a later feature's failed call, or by a failure the script expected."""
        if entry["url"] and self.is_backend(entry["url"]):
            failed = [r for r in self.requests if r["url"] == entry["url"] and r["screen"] == entry["screen"]]
            return self.later_issue(entry["url"]) is not None or any(self.is_expected(r) for r in failed)
        match = re.search(r"Request failed with status code (\d+)", entry["text"])
        if match is None and "status of 404" not in entry["text"]:
            return False
        status = int(match.group(1)) if match else 404
        screen = entry["screen"]
        # an axios error names no URL: it is a later feature's when no core request of its screen failed so
        later_failed = any(r["status"] == status for r in self.failures(screen, later=True))
        core_failed = any(r["status"] == status for r in self.failures(screen))
        return later_failed and not core_failed


def _json_or_none(request: Any) -> Any:
    data = request.post_data
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"_raw": data[:200]}


def _offline(text: str, url: str) -> bool:
    where = f"{text} {url}"
    if any(marker in where for marker in OFFLINE_MARKERS):
        return True
    # a resource of another host that this machine cannot reach (no internet): not the backend's doing
    hosts = re.findall(r"https?://([^/\s:]+)", where)
    return bool(hosts) and all(host not in ("localhost", "127.0.0.1") for host in hosts)


# --- the walk ---------------------------------------------------------------------------------------------

class Walk:
    """What a frontend's script drives: the page, the backend (for sandbox actions), the screen bookkeeping."""

    def __init__(self, page: Any, recorder: Recorder, api: httpx.Client, out: Path, front: str,
                 email: str, password: str) -> None:
        self.page = page
        self.recorder = recorder
        self.api = api
        self.out = out
        self.front = front
        self.email = email
        self.password = password
        self.screens: list[dict[str, Any]] = []
        self.token: str | None = None

    @contextmanager
    def screen(self, name: str, core: bool = True, settle: bool = True) -> Iterator[None]:
        """Attribute what happens inside to `name`; screenshot it at the end (also when it fails).

        A screen that is not `core` belongs to a feature zapgate does not serve yet: its failures are
        reported (docs/frontend-compat.md lists them) but do not fail the walk.
        """
        number = len(self.screens) + 1
        self.recorder.screen = name
        entry: dict[str, Any] = {"screen": name, "core": core, "ok": True, "error": None, "screenshot": None}
        self.screens.append(entry)
        started = time.perf_counter()
        print(f"[{number:02d}] {name} ...", flush=True)
        try:
            yield
            if settle:  # what the page still loads now belongs to this screen
                self.settle()
        except Exception as error:
            entry["ok"] = False
            entry["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            entry["trace"] = traceback.format_exc(limit=4)
        finally:
            suffix = "" if entry["ok"] else "-FAILED"
            shot = self.out / f"{number:02d}-{_slug(name)}{suffix}.png"
            try:
                if settle or not entry["ok"]:  # unsettled: the script took its own screenshot
                    self.page.screenshot(path=str(shot), full_page=False)
                entry["screenshot"] = shot.name if shot.exists() else None
            except Exception as error:  # the page crashed beyond a screenshot
                entry["screenshot"] = f"(none: {error})"
            entry["seconds"] = round(time.perf_counter() - started, 2)
            failed = len(self.recorder.failures(name))
            errors = len(self.recorder.errors(name))
            status = "ok" if entry["ok"] and not failed and not errors else ("PROBLEM" if core else "later")
            print(f"     {status}: {failed} failed requests, {errors} console errors"
                  + (f"; script: {entry['error']}" if entry["error"] else ""), flush=True)

    def submit_login(self) -> None:
        """The family's login form (`#email`, `#password`, a submit button); fails unless the login answers 200.
        Meant for a screen opened with settle=False: what the app loads next belongs to the next screen."""
        page = self.page
        self.goto("/login")
        page.fill("#email", self.email)
        page.fill("#password", self.password)
        page.screenshot(path=str(self.out / f"{len(self.screens):02d}-{_slug(self.screens[-1]['screen'])}.png"))
        with page.expect_response(lambda response: response.url.endswith("/auth/login")) as answer:
            page.click("button[type=submit]")
        if answer.value.status != 200:
            raise AssertionError(f"POST /auth/login answered {answer.value.status}")

    def run_screens(self, screens: list[tuple[str, Callable[..., None]]], visits: list[tuple[str, str]],
                    later: list[tuple[str, str]], state: dict[str, Any], only: set[str] | None) -> None:
        """A frontend script's screens in order: scripted ones, served ones only visited, then the screens of
        features zapgate lacks (not core). `only`: just these names (besides what the script always does)."""
        for name, screen in screens:
            if only is None or name in only:
                with self.screen(name):
                    screen(self, state)
        for name, path in visits:
            if only is None or name in only:
                with self.screen(name):
                    self.goto(path)
        for name, path in later:
            if only is None or name in only:
                with self.screen(name, core=False):
                    self.goto(path)

    def expect(self, method: str, path: str, status: int) -> None:
        """On the current screen, `method path` failing with `status` is right (e.g. /auth/me after logout);
        `"*", "*"`: any request with that status (an expired token's 403s, which the frontend refreshes on)."""
        self.recorder.expected.add((self.recorder.screen, method, path, status))

    def settle(self, timeout: float = 10_000) -> None:
        """Wait until the network is quiet (the socket stays open: it does not count)."""
        try:
            self.page.wait_for_load_state("networkidle", timeout=timeout)
        except Exception:
            pass
        self.page.wait_for_timeout(400)

    def goto(self, path: str) -> None:
        self.page.goto(self.front + path)
        self.settle()

    def backend(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request of the walk's own (not the page's): sandbox actions, set-up. Raises on a failure."""
        if self.token is None:
            login = self.api.post("/auth/login", json={"email": self.email, "password": self.password})
            login.raise_for_status()
            self.token = login.json()["token"]
        response = self.api.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def wait_for(self, check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.page.wait_for_timeout(200)
        raise TimeoutError(f"timed out waiting for {what}")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def preflight(api: httpx.Client, front: str) -> None:
    """Fail early, with the fix, when zapgate is unreachable, refuses this origin or has no sandbox."""
    try:
        health = api.get("/health")
    except httpx.TransportError as error:
        sys.exit(f"zapgate is not reachable at {api.base_url}: {error}")
    if health.status_code != 200:
        sys.exit(f"zapgate's /health answered {health.status_code}")
    cors = api.options("/auth/login", headers={"Origin": front, "Access-Control-Request-Method": "POST"})
    if cors.headers.get("Access-Control-Allow-Origin") != front:
        sys.exit(f"zapgate does not allow the origin {front}: start it with FRONTEND_URL={front}")


def write_report(out: Path, walk: Walk, recorder: Recorder, frontend: str, build: Path) -> dict[str, Any]:
    screens = []
    for entry in walk.screens:
        name = entry["screen"]
        requests = [r for r in recorder.requests if r["screen"] == name]
        screens.append({**entry, "requests": len(requests), "failed": len(recorder.failures(name)),
                        "consoleErrors": len(recorder.errors(name)),
                        "offlineErrors": sum(1 for c in recorder.console if c["screen"] == name and c["offline"])})
    distinct = sorted({(r["method"], _template(r["url"], recorder.api)) for r in recorder.requests})
    core = [s for s in screens if s["core"]]
    summary = {
        "frontend": frontend, "build": str(build), "api": recorder.api, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "screens": len(screens), "coreScreens": len(core),
        "scriptFailures": sum(1 for s in core if not s["ok"]),
        "requests": len(recorder.requests), "distinctRequests": len(distinct),
        "failedRequests": sum(s["failed"] for s in core), "consoleErrors": sum(s["consoleErrors"] for s in core),
        "laterFailedRequests": len(recorder.failures(later=True)),
        "offlineErrors": sum(1 for c in recorder.console if c["offline"]),
        "socketEvents": sum(len(s["events"]) for s in recorder.sockets),
    }
    report = {"summary": summary, "screens": screens,
              "requests": [_without_bodies(r) for r in recorder.requests],
              "console": recorder.console, "sockets": recorder.sockets, "staticFailures": recorder.static_failures}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = [f"# Walk of the {frontend} frontend against {recorder.api}", "",
             "| " + " | ".join(f"{k}" for k in summary) + " |", "|" + "---|" * len(summary),
             "| " + " | ".join(str(v) for v in summary.values()) + " |", "",
             "| # | screen | core | script | requests | failed | console errors | offline errors | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for number, s in enumerate(screens, 1):
        script = "ok" if s["ok"] else f"FAILED: {s['error']}"
        lines.append(f"| {number} | {s['screen']} | {'yes' if s['core'] else 'later'} | {script} | "
                     f"{s['requests']} | {s['failed']} | "
                     f"{s['consoleErrors']} | {s['offlineErrors']} | {s['seconds']} |")
    failures = recorder.failures()
    if failures:
        lines += ["", "## Failed backend requests", "", "| screen | request | status | answer |", "|---|---|---|---|"]
        lines += [f"| {r['screen']} | {r['method']} {r['url'].removeprefix(recorder.api)} | {r['status']} | "
                  f"{json.dumps(r.get('responseBody'), ensure_ascii=False)[:160]} |" for r in failures]
    later = recorder.failures(later=True)
    if later:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for r in later:
            key = (r["method"], _template(r["url"], recorder.api))
            seen.setdefault(key, {"status": r["status"], "screens": set(), "issue": recorder.later_issue(r["url"])})
            seen[key]["screens"].add(r["screen"])
        lines += ["", "## Calls of features zapgate does not serve yet (not counted as failures)", "",
                  "| request | status | screens | served by |", "|---|---|---|---|"]
        lines += [f"| {m} {p} | {v['status']} | {', '.join(sorted(v['screens']))} | {v['issue']} |"
                  for (m, p), v in sorted(seen.items())]
    errors = recorder.errors()
    if errors:
        lines += ["", "## Console errors (not offline noise)", ""]
        lines += [f"- **{c['screen']}** ({c['kind']}): `{c['text'][:300]}`" for c in errors]
    lines += ["", "## Distinct backend requests", ""] + [f"- `{m} {p}`" for m, p in distinct]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return summary


def _without_bodies(request: dict[str, Any]) -> dict[str, Any]:
    """A request for the report: bodies left out, but a failure keeps what the backend said."""
    entry = {k: v for k, v in request.items() if k not in ("requestBody", "responseBody")}
    if not 0 < request["status"] < 400:
        entry["answer"] = json.dumps(request.get("responseBody"), ensure_ascii=False)[:300]
        entry["sent"] = json.dumps(request.get("requestBody"), ensure_ascii=False)[:300]
    return entry


def _template(url: str, api: str) -> str:
    return path_template(urlsplit(url).path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, required=True, help="the frontend's build folder (index.html)")
    parser.add_argument("--api", default="http://localhost:8080", help="zapgate's URL (use localhost, not 127.*)")
    parser.add_argument("--out", type=Path, default=Path("walk-out"))
    parser.add_argument("--frontend", default="ticketz", help="which script of screens (a module here)")
    parser.add_argument("--port", type=int, default=3000, help="where the build is served (FRONTEND_URL)")
    parser.add_argument("--email", default="admin@zapgate.local")
    parser.add_argument("--password", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--record", type=Path, help="write the request list for tests/contract here")
    parser.add_argument("--only", help="comma-separated screen names to walk (after login)")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args(argv)

    if not (args.build / "index.html").is_file():
        sys.exit(f"{args.build} has no index.html: pass the frontend's build folder")
    script = importlib.import_module(args.frontend)
    api_url = args.api.rstrip("/")
    parts = urlsplit(api_url)
    front = f"http://localhost:{args.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()

    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=api_url, timeout=30) as api:
        preflight(api, front)
        server = serve_build(args.build, args.port, script.config_json(parts))
        recorder = Recorder(api_url, getattr(script, "LATER_ROUTES", {}))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, headless=not args.headed,
                                                     args=["--no-sandbox"])
                context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
                page = context.new_page()
                page.set_default_timeout(15_000)
                recorder.attach(page)
                walk = Walk(page, recorder, api, args.out, front, args.email, args.password)
                only = set(args.only.split(",")) if args.only else None
                script.walk(walk, only)
                browser.close()
        finally:
            server.shutdown()
    summary = write_report(args.out, walk, recorder, args.frontend, args.build)
    if args.record:
        entries = record_entries([r for r in recorder.requests if 0 < r["status"] < 400], api_url)
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps({"frontend": args.frontend, "recorded": summary["at"],
                                           "requests": entries}, indent=1, ensure_ascii=False) + "\n")
        print(f"recorded {len(entries)} distinct requests into {args.record}")
    print(json.dumps(summary, indent=1))
    print(f"report: {args.out / 'report.md'}")
    bad = summary["failedRequests"] or summary["consoleErrors"] or summary["scriptFailures"]
    return 1 if bad else 0


def _parse_query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


if __name__ == "__main__":
    sys.exit(main())
