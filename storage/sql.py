"""Named SQL: `-- name: some_query` blocks in a .sql file, loaded once into a read-only mapping."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries(Mapping[str, str]):
    """Attribute and item access to the queries of one file: `q.user_by_email`, `q["user_by_email"]`."""

    def __init__(self, queries: dict[str, str]) -> None:
        self._queries = dict(queries)

    def __getitem__(self, name: str) -> str:
        return self._queries[name]

    def __getattr__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in queries.sql") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)


def parse_queries(text: str) -> Queries:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = body.strip().rstrip(";").strip()
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        if not sql:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = sql
    return Queries(queries)


def load_queries(path: Path) -> Queries:
    return parse_queries(path.read_text(encoding="utf-8"))
