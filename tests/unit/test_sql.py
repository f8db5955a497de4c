from __future__ import annotations

import pytest

from storage.db import QUERIES_FILE
from storage.sql import load_queries, parse_queries


def test_parse_named_queries() -> None:
    q = parse_queries("-- name: one\nSELECT 1;\n\n-- name: two\n-- a comment\nSELECT %(x)s\n")
    assert q.one == "SELECT 1" and q["two"].endswith("SELECT %(x)s") and len(q) == 2
    with pytest.raises(AttributeError):
        _ = q.three


def test_duplicate_and_empty_queries_are_rejected() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n\n-- name: b\nSELECT 2\n")


def test_project_queries_load_and_use_named_parameters_only() -> None:
    queries = load_queries(QUERIES_FILE)
    assert "user_by_email" in queries
    for name, sql in queries.items():
        assert "{" not in sql, f"{name} looks like string formatting"
