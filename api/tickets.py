"""Placeholder: being written."""

from __future__ import annotations

from quart import Blueprint

blueprint = Blueprint("tickets", __name__)
