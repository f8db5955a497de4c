"""The live state of the process, read on demand: the supervision tree and the figures of its parts.

`Runtime` is built by the composition root once the root supervisor runs, kept on `Deps`, and read by
the super admin's runtime view (`GET /admin/runtime`, api/runtime_view.py) and by the metrics collector
(api/metrics.py) when Prometheus scrapes. Nothing here is recorded as it happens: every figure is read
from the actors' own state (supervisors' children, registries, mailboxes' `statistics()`, counters the
parts keep) at the moment it is asked for, so the hot paths pay nothing for it.

The tree: the root supervisor and its children; the children that supervise actors of their own
(sessions, conversations, campaigns) nest their supervisor with its children — each session by
connection, the conversations' actors counted per company (with the deepest mailboxes and the ones
crash-looping), each campaign. Parts that are merged later register a section of their own
(`Runtime.sections`, e.g. the webhook deliverers) and appear beside the tree.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Any

import attrs

from actors.campaigns import CampaignSupervisor
from actors.number_check import NumberChecker
from actors.scheduler import Scheduler
from actors.schedules import ScheduledMessages
from actors.session import SessionManager
from actors.ticket import TicketRouter
from api.realtime import RealtimeServer
from api.realtime.direct import DirectWebsockets
from gateway import __version__
from gateway.broker import Broker
from gateway.supervisor import SupervisorHandle
from storage.db import Database
from storage.writer import GroupCommitWriter

Section = Callable[[], Any]


@attrs.define(eq=False)
class Runtime:
    """What the runtime view and the metrics read; every method is sync, cheap and makes no query."""

    root: SupervisorHandle
    sessions: SessionManager
    tickets: TicketRouter
    campaigns: CampaignSupervisor
    scheduler: Scheduler
    number_check: NumberChecker
    scheduled: ScheduledMessages
    writer: GroupCommitWriter
    broker: Broker
    db: Database
    realtime: RealtimeServer | None = None
    websockets: DirectWebsockets | None = None
    started_at: float = attrs.field(factory=time.time)
    # parts merged later add a section of their own: name → a sync function answering its JSON
    sections: dict[str, Section] = attrs.field(factory=dict)
    # ... and their supervisors' `stats()`, counted in the metrics (restarts, crash loops) like the others
    supervisors: list[Callable[[], dict[str, Any]]] = attrs.field(factory=list)

    def supervisor_stats(self) -> list[dict[str, Any]]:
        """Every supervisor's counters (`Supervisor.stats()`): the root, sessions, conversations, campaigns,
        and those of later parts; the ones not running are left out."""
        every = [self.root.stats(), self.sessions.supervisor_stats(), self.tickets.supervisor_stats(),
                 self.campaigns.supervisor_stats(), *(stats() for stats in self.supervisors)]
        return [stats for stats in every if stats]

    def tree(self) -> dict[str, Any]:
        """The supervision tree with each part's figures (JSON-ready)."""
        details: dict[str, Callable[[], dict[str, Any]]] = {
            "writer": self.writer_figures,
            "scheduler": self.scheduler_figures,
            "number-check": lambda: {"mailbox": self.number_check.mailbox(), **self.number_check.stats()},
            "tickets": lambda: {"supervisor": _supervisor(self.tickets.supervisor_stats()), **self.tickets.describe()},
            "sessions": lambda: {"supervisor": _supervisor(self.sessions.supervisor_stats()),
                                 "sessions": self.sessions.describe()},
            "campaigns": lambda: {"supervisor": _supervisor(self.campaigns.supervisor_stats()),
                                  "campaigns": self.campaigns.describe()},
            "realtime": self.realtime_figures,
            "live": lambda: {"broker": self.broker.stats()},
        }
        children = []
        for child in self.root.describe_children():
            name = str(child.id)
            detail = details.get(name)
            children.append({"id": name, "state": child.state.value, "restarts": child.restarts,
                             "crashLooping": child.crash_looping, **({"detail": detail()} if detail else {})})
        return {**_supervisor(self.root.stats()), "children": children}

    def snapshot(self) -> dict[str, Any]:
        """The whole view: the process, the tree, the database, and the sections of later parts."""
        now = time.time()
        return {
            "generatedAt": _iso(now),
            "version": __version__,
            "pid": os.getpid(),
            "startedAt": _iso(self.started_at),
            "uptimeSeconds": round(now - self.started_at, 1),
            "supervision": self.tree(),
            "database": self.database_figures(),
            "broker": self.broker.stats(),
            **{name: section() for name, section in self.sections.items()},
        }

    def uptime(self) -> float:
        return time.time() - self.started_at

    # ── the parts ──

    def writer_figures(self) -> dict[str, Any]:
        return {"queued": self.writer.queued, "queueSize": self.writer.queue_size, **self.writer.stats()}

    def scheduler_figures(self) -> dict[str, Any]:
        stats = self.scheduler.stats()
        return {**stats, "overdueSeconds": self.timers_overdue_seconds(), "scheduledMessages": self.scheduled.stats()}

    def timers_overdue_seconds(self) -> float:
        """How late the earliest pending timer is (0 when none is due): the scheduler falling behind."""
        due = self.scheduler.next_due_at
        if due is None:
            return 0.0
        return max(0.0, (dt.datetime.now(dt.UTC) - due).total_seconds())

    def realtime_figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        if self.realtime is not None:
            stats = self.realtime.stats()
            figures.update(sessions=stats["sessions"], sockets=stats["sockets"], rooms=stats["rooms"])
        if self.websockets is not None:
            figures["websockets"] = self.websockets.stats()
        return figures

    def database_figures(self) -> dict[str, Any]:
        """The pool (psycopg_pool's own figures), the worker threads in use, and what was seen of outages."""
        pool = self.db.pool.get_stats()
        return {
            "pool": {"min": pool.get("pool_min", 0), "max": pool.get("pool_max", 0), "size": pool.get("pool_size", 0),
                     "available": pool.get("pool_available", 0), "waiting": pool.get("requests_waiting", 0),
                     "requests": pool.get("requests_num", 0), "errors": pool.get("requests_errors", 0),
                     "connectionsLost": pool.get("connections_lost", 0)},
            "threadsBusy": self.db.limiter.borrowed_tokens,
            "threadsMax": self.db.limiter.total_tokens,
            "health": self.db.health.snapshot(),
        }


def _supervisor(stats: dict[str, Any]) -> dict[str, Any]:
    """A supervisor's counters, in the view's (camelCase) names."""
    if not stats:
        return {"running": False}
    return {"name": stats["name"], "running": stats["running"], "children": stats["children"],
            "restartsTotal": stats["restarts_total"], "restartsRecent": stats["restarts_recent"],
            "crashLoop": stats["crash_loop"], "crashLooping": [repr(i) for i in stats["crash_looping"]],
            "givenUpTotal": stats["given_up_total"], "givenUpRecent": stats["given_up_recent"]}


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
