"""The operator's views while PostgreSQL is away (cut with tests/faultproxy.py, never stopped): `/metrics` and
`/admin/runtime` still answer — they read the live state, not the database — and say the database is down;
the runtime view's one query (the timers) is bounded and its failure shown, and it comes back with the database."""

from __future__ import annotations

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.faultproxy import FaultProxy
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, auth
from tests.integration.test_db_outage import eventually, proxy, server  # noqa: F401 (fixtures: the app behind the proxy)

TIMEOUT = 60


def db_up(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "zapgate_db_up":
                return sample.value
    raise AssertionError("no zapgate_db_up")


async def test_metrics_and_the_runtime_view_answer_while_the_database_is_away(server: Server,  # noqa: F811
                                                                            proxy: FaultProxy,  # noqa: F811
                                                                            ) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        with trio.fail_after(TIMEOUT):
            login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            token = login.json()["token"]
            before = (await client.get("/admin/runtime", headers=auth(token))).json()
            assert "byKind" in before["timers"] and before["database"]["health"]["status"] == "up"
            assert db_up((await client.get("/metrics")).text) == 1

            await proxy.cut()
            assert (await client.get("/ready")).status_code == 503  # the process has noticed
            away = await client.get("/admin/runtime", headers=auth(token))
            assert away.status_code == 200, away.text
            view = away.json()
            assert "error" in view["timers"] and "byKind" not in view["timers"]
            assert {child["id"] for child in view["supervision"]["children"]} >= {"writer", "sessions", "tickets"}
            assert view["database"]["health"]["status"] == "down"
            page = await client.get("/admin/runtime?format=html", headers=auth(token))
            assert page.status_code == 200 and "Supervision tree" in page.text
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200 and db_up(scraped.text) == 0

            await proxy.restore()

            async def timers_back() -> bool:
                again = (await client.get("/admin/runtime", headers=auth(token))).json()
                return "byKind" in again["timers"]

            await eventually(timers_back, "the timers shown again")
            assert db_up((await client.get("/metrics")).text) == 1
