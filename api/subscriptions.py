"""Subscriptions on every request: a company past its due date (plus the installation's `gracePeriod`)
is refused with 402 `ERR_SUBSCRIPTION_EXPIRED` (ticketz's status and code; its frontends translate it and
neither refreshes nor logs out on a 402), and a feature its plan lacks with 403 `ERR_PLAN_FEATURE_DISABLED`.

Exempt from the expiry: public views, super admins (they must always reach the screens that fix it),
and the views marked `@unpaid_ok` — login, refresh, logout, `/auth/me`, the plan and invoice screens,
the company's own plan. WhatsApp intake never goes through here: an expired company keeps receiving.

What a company is checked against (`storage.plans.Access`) is kept per process for `ACCESS_TTL` seconds;
this process's own changes (a company or plan edited, an invoice paid, the grace changed) drop it at once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from quart import g

from api.errors import ApiError, Forbidden
from storage import plans
from storage.db import Database
from storage.errors import StorageError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ACCESS_TTL = 5.0  # seconds another process's change of a company's plan or due date may take to apply here
MAX_ENTRIES = 10_000

# the plan's flags by the names the family's frontends read
FEATURE_NAMES = {"use_campaigns": "useCampaigns", "use_schedules": "useSchedules",
                 "use_internal_chat": "useInternalChat", "use_external_api": "useExternalApi",
                 "use_kanban": "useKanban", "use_open_ai": "useOpenAi", "use_integrations": "useIntegrations"}


class SubscriptionExpired(ApiError):
    status, code = 402, "ERR_SUBSCRIPTION_EXPIRED"


class AccessCache:
    """Company id → (`Access`, when it was read)."""

    def __init__(self, db: Database, *, ttl: float = ACCESS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[int, tuple[plans.Access | None, float]] = {}

    async def get(self, company_id: int) -> plans.Access | None:
        entry = self._entries.get(company_id)
        now = self.clock()
        if entry is not None and now - entry[1] < self.ttl:
            return entry[0]
        try:
            access = await plans.company_access(self.db, company_id)
        except StorageError:
            # the database is away: the last answer, or none (the check must not add failures to an outage;
            # the route fails by itself if it needs the database)
            return entry[0] if entry is not None else None
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[company_id] = (access, now)
        return access

    def forget(self, company_id: int | None = None) -> None:
        """Drop one company's entry, or every entry (a plan or the grace changed)."""
        if company_id is None:
            self._entries.clear()
        else:
            self._entries.pop(company_id, None)


def unpaid_ok(view: F) -> F:
    """Mark a view as reachable by a company whose subscription has expired."""
    view._zapgate_unpaid_ok = True  # type: ignore[attr-defined]
    return view


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def check_company(cache: AccessCache, company_id: int, *, feature: str | None = None) -> None:
    """Refuse when the company's subscription has expired, or (with `feature`) its plan lacks it."""
    access = await cache.get(company_id)
    if access is None:
        return  # deleted meanwhile: the view answers for it
    if access.expired(today()):
        raise SubscriptionExpired(f"the company's subscription expired on {access.due_date.isoformat()}"
                                  f" (grace: {access.grace_days} days); pay its invoice to continue")
    if feature is not None and feature not in access.features:
        raise plan_lacks(feature)


def plan_lacks(feature: str) -> Forbidden:
    return Forbidden(f"the company's plan does not include this feature ({FEATURE_NAMES[feature]})",
                     code="ERR_PLAN_FEATURE_DISABLED")


async def check_request(cache: AccessCache, view: Any) -> None:
    """The app's hook after authentication: the expiry, for every view not marked `@unpaid_ok`."""
    principal = g.principal
    if principal.super or getattr(view, "_zapgate_unpaid_ok", False):
        return
    await check_company(cache, principal.company_id)


async def has_feature(cache: AccessCache, company_id: int, feature: str) -> bool:
    access = await cache.get(company_id)
    return access is None or feature in access.features


async def require_feature(cache: AccessCache, company_id: int, feature: str) -> None:
    """403 `ERR_PLAN_FEATURE_DISABLED` when the company's plan lacks `feature` (a `storage.plans.FEATURES` name)."""
    if not await has_feature(cache, company_id, feature):
        raise plan_lacks(feature)
