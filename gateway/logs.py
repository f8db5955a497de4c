"""Structured logging: one JSON object per line when stderr is not a terminal, readable text when it is.

Extra fields given with `log.info("...", extra={"fields": {...}})` become keys of the JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "fields"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += "  " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once (idempotent): level and format from the configuration."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_zapgate", False):
            root.removeHandler(existing)
    handler._zapgate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # hypercorn's own access log duplicates ours; its error log stays.
    logging.getLogger("hypercorn.access").disabled = True
    for noisy in ("psycopg.pool", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
