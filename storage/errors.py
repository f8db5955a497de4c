"""Domain errors of the storage layer; `map_errors` is the one place psycopg errors become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg


class StorageError(Exception):
    """Base of every error the storage layer raises."""


class NotFound(StorageError):
    """The row does not exist (or belongs to another company)."""


class Conflict(StorageError):
    """A unique constraint was violated; `constraint` names it."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class InvalidReference(StorageError):
    """A foreign key points at nothing; `constraint` names it."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class InvalidData(StorageError):
    """A check constraint or a data format was rejected by the database."""


class QueryTimeout(StorageError):
    """The statement ran past `statement_timeout`."""


class Unavailable(StorageError):
    """The database cannot be reached (connection refused, pool exhausted, server shutting down)."""


DB_AWAY = (Unavailable, QueryTimeout)  # the database is away or too slow: waited out by workers, never a crash


def db_away(error: BaseException) -> bool:
    """`error` says the database is away: an Unavailable or QueryTimeout, alone or every one of a group."""
    if isinstance(error, BaseExceptionGroup):
        return all(db_away(inner) for inner in error.exceptions)
    return isinstance(error, DB_AWAY)


@contextmanager
def map_errors() -> Iterator[None]:
    """Translate psycopg exceptions raised inside the block into StorageError subclasses."""
    try:
        yield
    except StorageError:
        raise
    except pg.UniqueViolation as error:
        raise Conflict(str(error.diag.message_detail or error), error.diag.constraint_name) from error
    except pg.ForeignKeyViolation as error:
        raise InvalidReference(str(error.diag.message_detail or error), error.diag.constraint_name) from error
    except (pg.CheckViolation, pg.NotNullViolation, pg.DataException) as error:
        raise InvalidData(str(error.diag.message_primary or error)) from error
    except pg.QueryCanceled as error:
        raise QueryTimeout(str(error)) from error
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise Unavailable(str(error)) from error
    except Exception as error:  # the pool's own errors (PoolTimeout, PoolClosed)
        if type(error).__module__.startswith("psycopg_pool"):
            raise Unavailable(str(error)) from error
        raise
