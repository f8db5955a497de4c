"""What the ticketz frontend asks on every load: the probe `GET /`, `/version`, the public settings, every
setting's default, the values a setting accepts, the installation's settings and the logo uploads."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import attrs
import httpx
import pytest
import trio

from gateway import __version__
from gateway.broker import Subscription
from storage import settings
from tests.integration.conftest import Api, Server, auth

TIMEOUT = 30
ORIGIN = "http://frontend.test"  # the test server's FRONTEND_URL
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5e1d5b20000000049454e44ae426082")
# every key the ticketz frontend reads with GET /settings/:key, and its settings page's keys
FRONTEND_KEYS = {
    "groupsTab": "disabled", "soundGroupNotifications": "disabled", "tagsMode": "ticket", "CheckMsgIsGroup": "enabled",
    "gracePeriod": "0", "userRating": "disabled", "scheduleType": "disabled", "outOfHoursAction": "pending",
    "call": "disabled", "chatbotAutoExit": "disabled", "showNumericIcons": "disabled", "quickMessages": "individual",
    "ticketAcceptedMessage": "", "transferMessage": "", "ratingsTimeout": "5", "autoReopenTimeout": "0",
    "noQueueTimeout": "0", "noQueueTimeoutAction": "0", "openTicketTimeout": "0", "openTicketTimeoutAction": "pending",
    "chatbotTicketTimeout": "0", "chatbotTicketTimeoutAction": "0", "messageVisibility": "message",
    "keepUserAndQueue": "enabled", "aiProvider": "openai", "audioTranscriptions": "disabled",
    "defaultLanguage": "en", "allowSignup": "disabled", "useMultiThreadedWbot": "disabled", "uploadLimit": "15",
    "downloadLimit": "15", "appName": "", "primaryColorLight": "", "loginPageLinks": "", "extensionDownloadUrl": "",
}


@attrs.frozen
class World:
    super_admin: str  # super admin of company Default
    default_id: int
    admin: str  # admin (not super) of company Alpha
    user: str  # plain user of Alpha
    alpha_id: int
    b_admin: str  # admin of company Beta
    beta_id: int


@pytest.fixture
async def world(api: Api) -> World:
    super_admin = await api.admin_token()
    default_id = (await api.client.get("/auth/me", headers=auth(super_admin))).json()["companyId"]
    alpha = await api.create_company(super_admin, "Alpha", "admin@alpha.test", "alpha-pass-1")
    beta = await api.create_company(super_admin, "Beta", "admin@beta.test", "beta-pass-1")
    admin = await api.login("admin@alpha.test", "alpha-pass-1")
    await api.create_user(admin, "user@alpha.test", "user-pass-1")
    return World(super_admin=super_admin, default_id=default_id, admin=admin,
                 user=await api.login("user@alpha.test", "user-pass-1"), alpha_id=alpha["id"],
                 b_admin=await api.login("admin@beta.test", "beta-pass-1"), beta_id=beta["id"])


async def put(api: Api, token: str, key: str, value: Any) -> httpx.Response:
    return await api.client.put(f"/settings/{key}", json={"value": value}, headers=auth(token))


async def table(server: Server, name: str) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, f"SELECT * FROM {name} ORDER BY 1, 2")


def assert_error(response: httpx.Response, status: int, code: str | None = None, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"].startswith("ERR_") and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    if field is not None:
        assert body.get("field") == field, body


# ─── the probe and the version ──────────────────────────────────────────────────────────


async def test_probe_answers_without_token_with_a_date_the_frontend_can_read(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        response = await api.client.get("/", params={"cb": int(time.time() * 1000)}, headers={"Origin": ORIGIN})
        assert response.status_code == 200, response.text
        server_date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
        assert abs(server_date - time.time()) < 60
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Date" in [h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")]
        body = response.json()
        assert body == {"name": "zapgate", "version": __version__, "tagName": f"v{__version__}", "commitHash": "",
                        "commitTimestamp": "", "branchName": "", "buildTimestamp": ""}
        assert (await api.client.get("/version")).json() == body
        with_token = await api.client.get("/", headers=auth(world.user))  # the About box sends its token
        assert with_token.status_code == 200 and with_token.json() == body
        # the installation's name, once the super admin sets it
        assert (await put(api, world.super_admin, "appName", "Acme Desk")).status_code == 200
        assert (await api.client.get("/")).json()["name"] == "Acme Desk"
        assert (await api.client.get("/version")).json()["name"] == "Acme Desk"
        # other unknown routes keep the JSON 404
        missing = await api.client.get("/nope")
        assert_error(missing, 404, "ERR_NOT_FOUND")


# ─── public settings ────────────────────────────────────────────────────────────────────


async def test_public_settings_answer_ticketz_keys_from_the_installation(api: Api, server: Server,
                                                                         world: World) -> None:
    with trio.fail_after(TIMEOUT):
        async def public(key: str) -> Any:
            response = await api.client.get(f"/public-settings/{key}", headers={"Origin": ORIGIN})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # index.html fetches them cross-origin
            return response.json()

        for key in sorted(settings.PUBLIC_KEYS - {"allowSignup"}):
            assert await public(key) is None, key  # unset: null, and the frontend uses its own default
        assert await public("allowSignup") == "disabled"
        # set by the super admin: every visitor sees the installation's values, whatever company
        for key, value in (("appName", "Acme Desk"), ("primaryColorLight", "#123456"), ("primaryColorDark", "#abc"),
                           ("allowSignup", "enabled"),
                           ("loginPageLinks", '[{"title":"Site","url":"https://acme.test"}]')):
            assert (await put(api, world.super_admin, key, value)).status_code == 200, key
            assert await public(key) == value
        # a company admin may not change them (not even "their" copy): 403, nothing written
        before = await table(server, "platform_settings")
        assert_error(await put(api, world.admin, "appName", "Hijacked"), 403, "ERR_NO_PERMISSION")
        assert_error(await put(api, world.b_admin, "allowSignup", "disabled"), 403, "ERR_NO_PERMISSION")
        assert await table(server, "platform_settings") == before
        assert await public("appName") == "Acme Desk"
        # keys that are not public answer null, even when set: a credential never leaves this way
        assert (await put(api, world.admin, "apiToken", "s3cret-token")).status_code == 200
        assert (await put(api, world.super_admin, "uploadLimit", "30")).status_code == 200
        for key in ("apiToken", "openAiKey", "userRating", "uploadLimit", "vapidPublicKey", "nope", "x" * 300):
            assert await public(key) is None, key
        # the env token of the original is not needed, nor looked at
        assert (await api.client.get("/public-settings/appName", params={"token": "wrong"})).json() == "Acme Desk"


# ─── every key answers its default ──────────────────────────────────────────────────────


async def test_every_known_key_answers_its_default(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        # a key added after the company was created has no row: it still answers its default
        await trio.to_thread.run_sync(server.sql, "DELETE FROM settings WHERE company_id = %s AND key = 'userRating'",
                                      (world.alpha_id,))
        for key, default in FRONTEND_KEYS.items():
            response = await api.client.get(f"/settings/{key}", headers=auth(world.admin))
            assert response.status_code == 200, (key, response.text)
            assert response.json() == default, key  # the value itself, a JSON string
        for key in ("groupsTab", "soundGroupNotifications", "tagsMode", "CheckMsgIsGroup"):  # any user reads these
            assert (await api.client.get(f"/settings/{key}", headers=auth(world.user))).json() == FRONTEND_KEYS[key]
        assert_error(await api.client.get("/settings/nope", headers=auth(world.user)), 404, "ERR_NO_SETTING_FOUND")
        # credentials: the admins' only
        for key in ("apiToken", "openAiKey"):
            assert (await api.client.get(f"/settings/{key}", headers=auth(world.admin))).json() == ""
            assert_error(await api.client.get(f"/settings/{key}", headers=auth(world.user)), 403, "ERR_NO_PERMISSION")

        async def listed(token: str) -> dict[str, str]:
            response = await api.client.get("/settings", headers=auth(token))
            assert response.status_code == 200, response.text
            rows = response.json()
            assert all(set(row) == {"key", "value", "createdAt", "updatedAt"} for row in rows)
            return {row["key"]: row["value"] for row in rows}

        admin_list = await listed(world.admin)
        assert admin_list == settings.DEFAULTS  # every company key, the deleted row's too
        user_list = await listed(world.user)
        assert user_list == {k: v for k, v in settings.DEFAULTS.items() if k not in ("apiToken", "openAiKey")}
        assert await listed(world.super_admin) == {**settings.DEFAULTS, **settings.PLATFORM_DEFAULTS}


# ─── values are checked against the key ─────────────────────────────────────────────────


async def test_values_are_checked_against_the_key(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        own_queue = (await api.client.post("/queue", json={"name": "Sales", "color": "#0A0"},
                                           headers=auth(world.admin))).json()["id"]
        their_queue = (await api.client.post("/queue", json={"name": "Other", "color": "#0A0"},
                                             headers=auth(world.b_admin))).json()["id"]
        refused = [
            ("tagsMode", "everything"), ("groupsTab", "yes"), ("scheduleType", "always"), ("aiProvider", "gemini"),
            ("ratingsTimeout", "five"), ("ratingsTimeout", "-1"), ("ratingsTimeout", ""), ("autoReopenTimeout", 1.5),
            ("noQueueTimeoutAction", their_queue), ("noQueueTimeoutAction", "987654"), ("noQueueTimeoutAction", "a"),
            ("chatbotTicketTimeoutAction", -3), ("openTicketTimeoutAction", "open"), ("messageVisibility", None),
            ("apiToken", "x" * 256), ("chatBotType", "x" * 33),
        ]
        super_refused = [
            ("primaryColorLight", "red"), ("primaryColorDark", "#12345"), ("appLogoLight", "../../etc/passwd"),
            ("appLogoDark", "A" * 22 + "/missing.png"), ("loginPageLinks", "not json"),
            ("loginPageLinks", '[{"title":"x","url":"javascript:alert(1)"}]'), ("loginPageLinks", '{"a":1}'),
            ("loginPageLinks", '[{"title":"","url":"https://a.test"}]'), ("defaultLanguage", "português"),
            ("uploadLimit", "lots"), ("appName", "x" * 256), ("allowSignup", "maybe"),
        ]
        before = (await table(server, "settings"), await table(server, "platform_settings"))
        for token, cases in ((world.admin, refused), (world.super_admin, super_refused)):
            for key, value in cases:
                assert_error(await put(api, token, key, value), 400, "ERR_VALIDATION", "value")
        assert (await table(server, "settings"), await table(server, "platform_settings")) == before

        accepted = [
            (world.admin, "tagsMode", "both", "both"), (world.admin, "groupsTab", True, "enabled"),
            (world.admin, "ratingsTimeout", 10, "10"), (world.admin, "ratingsTimeout", " 007 ", "7"),
            (world.admin, "noQueueTimeoutAction", own_queue, str(own_queue)),
            (world.admin, "chatbotTicketTimeoutAction", "0", "0"),
            (world.admin, "ticketAcceptedMessage", "  Olá {{name}}! ", "  Olá {{name}}! "),
            (world.super_admin, "primaryColorLight", "#A1b2C3", "#A1b2C3"),
            (world.super_admin, "primaryColorDark", "", ""),
            (world.super_admin, "defaultLanguage", "pt-BR", "pt-BR"), (world.super_admin, "gracePeriod", 3, "3"),
            (world.super_admin, "loginPageLinks",
             json.dumps([{"title": " Site ", "url": "https://acme.test/x", "n": 1}]),
             '[{"title":"Site","url":"https://acme.test/x"}]'),
            (world.super_admin, "appLogoLight", "", ""),
        ]
        for token, key, value, stored in accepted:
            response = await put(api, token, key, value)
            assert response.status_code == 200, (key, response.text)
            assert response.json()["key"] == key and response.json()["value"] == stored
            assert (await api.client.get(f"/settings/{key}", headers=auth(token))).json() == stored
        # another company's values are untouched
        assert (await api.client.get("/settings/tagsMode", headers=auth(world.b_admin))).json() == "ticket"
        # tenant limits stay the super admin's
        assert_error(await put(api, world.admin, "connectionLimit", "9"), 403, "ERR_NO_PERMISSION")


def setting_events(subscription: Subscription) -> list[tuple[str, dict[str, Any]]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("settings"):
            seen.append((event.name, event.payload))
    return seen


async def test_a_change_is_announced_to_the_company_but_never_a_credential(api: Api, server: Server,
                                                                            world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.alpha_id) as alpha, \
            server.broker.subscribe(world.beta_id) as beta:
        assert (await put(api, world.admin, "groupsTab", "enabled")).status_code == 200
        assert (await put(api, world.admin, "apiToken", "s3cret-token")).status_code == 200
        assert (await put(api, world.admin, "userRating", "enabled")).status_code == 200
        events = setting_events(alpha)
        assert ("settings", {"key": "groupsTab", "value": "enabled"}) in events  # ticketz's event for safe keys
        updates = [payload["setting"] for name, payload in events if name == f"company-{world.alpha_id}-settings"]
        assert [(s["key"], s["value"]) for s in updates] == [("groupsTab", "enabled"), ("userRating", "enabled")]
        assert "s3cret-token" not in json.dumps(events)
        assert [p["key"] for name, p in events if name == "settings"] == ["groupsTab"]  # safe keys only
        assert setting_events(beta) == []


# ─── logos and the login page's pictures ────────────────────────────────────────────────


async def test_logo_and_public_file_uploads(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        async def upload(path: str, token: str, data: dict[str, str], content: bytes = PNG,
                         mimetype: str = "image/png", name: str = "logo.png") -> httpx.Response:
            return await api.client.post(path, data=data, files={"file": (name, content, mimetype)},
                                         headers=auth(token))

        first = await upload("/settings/logo", world.super_admin, {"mode": "Light"})
        assert first.status_code == 200, first.text
        value = first.json()
        assert isinstance(value, str) and value.endswith("/logo.png")
        served = await api.client.get(f"/public/{value}")  # where the frontend loads it: <backend>/public/<value>
        assert served.status_code == 200 and served.content == PNG
        assert served.headers["content-type"] == "image/png"
        assert served.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        assert (await api.client.get("/public-settings/appLogoLight")).json() == value
        # a new logo replaces the old one, whose file is gone
        second = (await upload("/settings/logo", world.super_admin, {"mode": "Light"}, name="new.png")).json()
        assert second != value and (await api.client.get(f"/public/{second}")).status_code == 200
        assert (await api.client.get(f"/public/{value}")).status_code == 404
        # the Whitelabel page's "remove": PUT "" — the default logo again, the file removed
        assert (await put(api, world.super_admin, "appLogoLight", "")).status_code == 200
        assert (await api.client.get("/public-settings/appLogoLight")).json() is None
        assert (await api.client.get(f"/public/{second}")).status_code == 404
        # a favicon, and a file value may be set again by PUT once it exists
        favicon = (await upload("/settings/logo", world.super_admin, {"mode": "Favicon"},
                                content=b"<svg xmlns='http://www.w3.org/2000/svg'/>", mimetype="image/svg+xml",
                                name="icon.svg")).json()
        assert (await put(api, world.super_admin, "appLogoDark", favicon)).status_code == 200
        assert (await api.client.get("/public-settings/appLogoDark")).json() == favicon

        # the login page's pictures: an image beside the form, an image or a video behind it
        side = await upload("/settings/publicFile", world.super_admin, {"settingKey": "loginSidePanelImage"})
        assert side.status_code == 200 and (await api.client.get("/public-settings/loginSidePanelImage")).json() == \
            side.json()
        video = await upload("/settings/publicFile", world.super_admin, {"settingKey": "loginBackgroundContent"},
                             content=b"\x00\x00\x00\x18ftypmp42", mimetype="video/mp4", name="bg.mp4")
        assert video.status_code == 200 and video.json().endswith("/bg.mp4")

        def files() -> list[str]:
            return sorted(p.name for p in server.deps.public_files.root.iterdir())

        before = (await table(server, "platform_settings"), files())
        refusals = [
            ("/settings/logo", world.super_admin, {"mode": "Huge"}, PNG, "image/png", 400, "ERR_VALIDATION"),
            ("/settings/logo", world.super_admin, {"mode": "Light"}, b"<html>", "text/html", 406, "ERR_INVALID_UPLOAD"),
            ("/settings/logo", world.admin, {"mode": "Light"}, PNG, "image/png", 403, "ERR_NO_PERMISSION"),
            ("/settings/logo", world.user, {"mode": "Light"}, PNG, "image/png", 403, "ERR_NO_PERMISSION"),
            ("/settings/publicFile", world.super_admin, {"settingKey": "loginSidePanelImage"}, b"\x00", "video/mp4",
             406, "ERR_INVALID_UPLOAD"),
            ("/settings/publicFile", world.super_admin, {"settingKey": "appName"}, PNG, "image/png", 406,
             "ERR_INVALID_SETTING"),
            ("/settings/publicFile", world.super_admin, {}, PNG, "image/png", 406, "ERR_INVALID_UPLOAD"),
            ("/settings/publicFile", world.b_admin, {"settingKey": "loginSidePanelImage"}, PNG, "image/png", 403,
             "ERR_NO_PERMISSION"),
        ]
        for path, token, data, content, mimetype, status, code in refusals:
            assert_error(await upload(path, token, data, content, mimetype), status, code)
        no_file = await api.client.post("/settings/logo", data={"mode": "Dark"}, files={"other": ("x", b"x")},
                                        headers=auth(world.super_admin))
        assert_error(no_file, 406, "ERR_INVALID_UPLOAD")
        as_json = await api.client.post("/settings/logo", json={"mode": "Dark"}, headers=auth(world.super_admin))
        assert_error(as_json, 406, "ERR_INVALID_UPLOAD")
        assert (await table(server, "platform_settings"), files()) == before
        assert (await api.client.get("/public/not-a-token/logo.png")).status_code == 404
