"""The `zapgate` command: serve, migrate, create-company, create-user, version.

A bad configuration exits with status 2 and one line naming the variable, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence

import trio

from gateway import __version__
from gateway.config import Config, ConfigError, load_config
from gateway.logs import setup_logging

log = logging.getLogger("zapgate")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zapgate", description="zapgate: a self-hosted, multi-tenant WhatsApp customer-service gateway.",
        epilog="Configuration comes from the environment and an optional .env file; see README.md.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the gateway (migrates the database first)",
                           description="Run the HTTP API and realtime server until SIGTERM/SIGINT. "
                                       "Without DATABASE_URL/DB_HOST an embedded PostgreSQL is started "
                                       "in ZAPGATE_DATA_DIR.")
    serve.add_argument("--port", type=int, help="listen on this port (overrides PORT)")
    serve.add_argument("--host", help="listen on this address (overrides HOST)")

    sub.add_parser("migrate", help="apply pending database migrations and exit",
                   description="Apply schema.sql and the numbered migrations not yet applied. Idempotent.")

    company = sub.add_parser("create-company", help="create a company (and its first admin)",
                             description="Create a company. With --email, also create its admin user "
                                         "(the password is asked for when --password is not given).")
    company.add_argument("name", help="company name (unique)")
    company.add_argument("--email", help="email of the company's first admin")
    company.add_argument("--password", help="password of that admin (prompted when omitted)")
    company.add_argument("--admin-name", help="name of that admin (default: the company name)")

    user = sub.add_parser("create-user", help="create a user in a company",
                          description="Create a user; the password is asked for when --password is not given.")
    user.add_argument("--company-id", type=int, required=True, help="the company's id")
    user.add_argument("--name", required=True)
    user.add_argument("--email", required=True)
    user.add_argument("--password", help="prompted when omitted")
    user.add_argument("--profile", choices=("admin", "user"), default="user")
    user.add_argument("--super", action="store_true", help="a super admin (manages every company)")

    sub.add_parser("version", help="print the version", description="Print zapgate's version.")
    return parser


def _password(given: str | None) -> str:
    if given:
        password = given
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("zapgate: the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 6:
        raise SystemExit("zapgate: the password needs at least 6 characters")
    return password


async def _create_company(config: Config, args: argparse.Namespace) -> None:
    from api.auth import hash_password
    from gateway.bootstrap import database_url, open_database_sync
    from storage import companies, migrate

    with database_url(config) as url:
        await trio.to_thread.run_sync(migrate.migrate_url, url)
        with open_database_sync(config, url, min_size=0) as db:
            admin = None
            if args.email:
                admin = {"name": args.admin_name or args.name, "email": args.email.lower(),
                         "password_hash": await hash_password(_password(args.password), config.bcrypt_rounds)}
            company, admin_id = await companies.create_company(db, name=args.name, email=args.email, admin=admin)
    print(f"company {company['id']} created" + (f", admin user {admin_id} ({args.email})" if admin_id else ""))


async def _create_user(config: Config, args: argparse.Namespace) -> None:
    from api.auth import hash_password
    from gateway.bootstrap import database_url, open_database_sync
    from storage import companies, migrate, users

    with database_url(config) as url:
        await trio.to_thread.run_sync(migrate.migrate_url, url)
        with open_database_sync(config, url, min_size=0) as db:
            await companies.get_company(db, args.company_id)
            created = await users.create_user(
                db, args.company_id, name=args.name, email=args.email.lower(),
                password_hash=await hash_password(_password(args.password), config.bcrypt_rounds),
                profile="admin" if args.super else args.profile, super_=args.super,
                all_ticket="enable" if args.profile == "admin" else "disable", limited=False,
            )
    print(f"user {created['id']} ({created['email']}) created in company {args.company_id}")


def _migrate(config: Config) -> None:
    from gateway.bootstrap import database_url
    from storage import migrate

    with database_url(config) as url:
        applied = migrate.migrate_url(url)
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print(f"database is up to date (version {migrate.latest_version()})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"zapgate {__version__}")
        return 0
    try:
        environ = None
        if args.command == "serve" and (args.port is not None or args.host):
            import os

            environ = dict(os.environ)
            if args.port is not None:
                environ["PORT"] = str(args.port)
            if args.host:
                environ["HOST"] = args.host
        config = load_config(environ)
    except ConfigError as error:
        print(f"zapgate: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)

    from storage.errors import Conflict, NotFound, StorageError

    try:
        if args.command == "serve":
            from gateway.bootstrap import serve

            trio.run(serve, config)
        elif args.command == "migrate":
            _migrate(config)
        elif args.command == "create-company":
            trio.run(_create_company, config, args)
        elif args.command == "create-user":
            trio.run(_create_user, config, args)
    except Conflict as error:
        print(f"zapgate: already exists: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except NotFound as error:
        print(f"zapgate: not found: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except StorageError as error:
        print(f"zapgate: database error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
