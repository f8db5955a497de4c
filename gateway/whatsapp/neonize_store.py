"""whatsmeow's device store: the `whatsmeow_*` tables in our PostgreSQL database.

whatsmeow (Go, lib/pq) keeps each linked device and its keys in the `whatsmeow_*` tables of the
database given to the transport as `database_url`. `whatsmeow_dsn` turns any connection string
psycopg accepts into the URL lib/pq needs; `device_exists` and `forget_device` read and clear the
store from our side (blocking: run them on a thread), before a connection starts or when logging out
while not connected.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

DSN_CONNECT_TIMEOUT = "10"  # seconds; added to the device-store DSN when it has none

_DSN_KEPT = ("sslcert", "sslkey", "sslrootcert", "application_name")
_DSN_DROPPED = frozenset({
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "gssencmode", "channel_binding", "target_session_attrs", "load_balance_hosts",
})
_SSLMODES = {None: "disable", "disable": "disable", "allow": "disable", "prefer": "disable",
             "require": "require", "verify-ca": "verify-ca", "verify-full": "verify-full"}


def whatsmeow_dsn(url: str) -> str:
    """The `postgres://…` URL whatsmeow (Go, lib/pq) needs for the database of `url`.

    `url` is anything psycopg accepts: a `postgres[ql]://` URL or a `key=value` conninfo string,
    including Unix-socket hosts (`host=/path`, as the embedded server uses), which become
    `postgres://user@/db?host=%2Fpath`. lib/pq speaks less than libpq, so: sslmode `prefer`/`allow`
    (and none, libpq's default `prefer`) become `disable`; `connect_timeout` defaults to
    `DSN_CONNECT_TIMEOUT`; client-side tuning knobs are dropped; no host means lib/pq's default
    (localhost over TCP). Raises ValueError for what cannot be expressed (several hosts, libpq-only
    parameters such as `options`, `passfile` or `service`).
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ValueError(f"not a PostgreSQL connection string: {exc}") from None
    host = params.pop("hostaddr", None) or params.pop("host", None)
    params.pop("host", None)
    port = params.pop("port", None)
    user = params.pop("user", None)
    password = params.pop("password", None)
    dbname = params.pop("dbname", None)
    sslmode = params.pop("sslmode", None)
    connect_timeout = params.pop("connect_timeout", None) or DSN_CONNECT_TIMEOUT
    encoding = params.pop("client_encoding", None)
    if encoding is not None and encoding.replace("-", "").lower() != "utf8":
        raise ValueError(f"client_encoding={encoding} cannot be used: whatsmeow's driver speaks UTF8 only")
    if sslmode not in _SSLMODES:
        raise ValueError(f"sslmode={sslmode} is not supported by whatsmeow's driver")
    kept = {key: params.pop(key) for key in _DSN_KEPT if key in params}
    unknown = sorted(key for key in params if key not in _DSN_DROPPED)
    if unknown:
        raise ValueError(f"parameters not supported by whatsmeow's driver: {', '.join(unknown)}")
    if (host and "," in host) or (port and "," in str(port)):
        raise ValueError("several hosts are not supported by whatsmeow's driver")
    if host and host.startswith("@"):
        raise ValueError("abstract Unix sockets are not supported by whatsmeow's driver")

    auth = ""
    if user or password:
        auth = quote(user or "", safe="") + (":" + quote(password, safe="") if password else "") + "@"
    query: list[tuple[str, str]] = []
    if host and host.startswith("/"):
        netloc = auth
        query.append(("host", host))
        if port:
            query.append(("port", str(port)))
    else:
        netloc = auth + (f"[{host}]" if host and ":" in host else host or "")
        if port:
            netloc += f":{port}"
    query += [("sslmode", _SSLMODES[sslmode]), ("connect_timeout", str(connect_timeout)), *kept.items()]
    path = "/" + quote(dbname, safe="") if dbname else ""
    return f"postgres://{netloc}{path}?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query)


def device_exists(database_url: str, device_jid: str) -> bool:
    """Whether whatsmeow's store in `database_url` holds `device_jid` (blocking: run it on a thread)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=int(DSN_CONNECT_TIMEOUT)) as conn:
        try:
            row = conn.execute("SELECT 1 FROM whatsmeow_device WHERE jid = %s", (device_jid,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None


def forget_device(database_url: str, device_jid: str) -> None:
    """Delete a device and (by cascade) its keys from whatsmeow's store (blocking: run it on a thread)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=int(DSN_CONNECT_TIMEOUT)) as conn:
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            conn.execute("DELETE FROM whatsmeow_device WHERE jid = %s", (device_jid,))

