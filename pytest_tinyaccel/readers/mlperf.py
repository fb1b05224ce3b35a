"""Reader for MLPerf LoadGen's detail log (`mlperf_log_detail.txt`, one `:::MLLOG {json}`
entry per line): the LoadGen worker takes a run's figures, validity and errors from it."""

from __future__ import annotations

import json
from typing import Any


def loadgen_detail(text: str) -> dict[str, Any]:
    """The `:::MLLOG {json}` entries of mlperf_log_detail.txt as {key: value}
    (last value per key), plus `errors`: the values of entries flagged is_error."""
    entries: dict[str, Any] = {}
    errors: list[str] = []
    for line in text.splitlines():
        if not line.startswith(":::MLLOG"):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG") :])
        except json.JSONDecodeError:
            continue
        key = entry.get("key")
        if key is None:
            continue
        entries[key] = entry.get("value")
        if (entry.get("metadata") or {}).get("is_error"):
            errors.append(f"{key}: {entry.get('value')}")
    entries["errors"] = errors
    return entries
