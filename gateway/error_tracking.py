"""Error tracking (README "Error tracking"): unhandled errors reported to Sentry when SENTRY_DSN is set.

`open_error_tracker(config)` is entered by the composition root for as long as the app runs; it yields an
`ErrorTracker` kept on `Deps`. With SENTRY_DSN unset the tracker does nothing and `sentry_sdk` is not even
imported. With it set, the tracker owns a Sentry client of its own — not `sentry_sdk.init`'s process-wide
one (STYLE 14: no globals; two apps in one process report each to its own DSN) and with no integrations
(they patch libraries process-wide): the API's 500 path calls `report` itself. The client sends from its
own worker thread, so reporting never blocks the event loop; at the end the events still queued are
flushed, for at most `FLUSH_TIMEOUT` seconds.

What an event carries: the exception and its stack, the request's id (tag `request_id`, the X-Request-Id
the client was answered with), the error id of the 500's body (tag `error_id`), the method, path and route
template — never the query string, headers or body (they may hold tokens and personal data).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from gateway import __version__
from gateway.config import Config

log = logging.getLogger("zapgate.errors")

FLUSH_TIMEOUT = 2.0  # seconds the stopping app waits for queued events to be sent


class ErrorTracker:
    """Reports unhandled errors; a no-op without a client."""

    def __init__(self, client: Any = None) -> None:
        self._client = client  # a sentry_sdk.Client, or None: off
        self.reported = 0

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def report(self, error: BaseException, *, request_id: str | None = None, error_id: str | None = None,
               method: str | None = None, path: str | None = None, route: str | None = None) -> str | None:
        """Queue `error` for sending (never blocks, never raises); the Sentry event id, or None when off."""
        client = self._client
        if client is None:
            return None
        try:
            import sentry_sdk
            from sentry_sdk.utils import event_from_exception

            event, hint = event_from_exception(error, client_options=client.options)
            if method is not None and path is not None:
                event["request"] = {"method": method, "url": path}
            if route is not None:
                event["transaction"] = f"{method or ''} {route}".strip()
            scope = sentry_sdk.Scope()
            for name, value in (("request_id", request_id), ("error_id", error_id)):
                if value:
                    scope.set_tag(name, value)
            event_id = client.capture_event(event, hint=hint, scope=scope)
        except Exception:  # reporting must never turn one error into two
            log.warning("error not reported to Sentry", exc_info=True)
            return None
        self.reported += 1
        return event_id

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close(timeout=FLUSH_TIMEOUT)


@contextlib.asynccontextmanager
async def open_error_tracker(config: Config) -> AsyncIterator[ErrorTracker]:
    """The app's tracker while the block runs: reporting to SENTRY_DSN, or off when it is unset."""
    if config.sentry_dsn is None:
        yield ErrorTracker()
        return
    import sentry_sdk

    client = sentry_sdk.Client(
        dsn=config.sentry_dsn, environment=config.sentry_environment, release=f"zapgate@{__version__}",
        default_integrations=False, auto_enabling_integrations=False,
        shutdown_timeout=FLUSH_TIMEOUT)
    tracker = ErrorTracker(client)
    log.info("unhandled errors are reported to Sentry", extra={"fields": {"environment": config.sentry_environment}})
    try:
        yield tracker
    finally:  # the flush waits for the network: on a thread, bounded by FLUSH_TIMEOUT
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(tracker.close)
