"""Keep secrets out of everything lcgee writes.

Secrets (Planetary Computer subscription keys, Earth Engine tokens, service-account keys) come
from the environment or the user's credential files only. :func:`redact` replaces any of their
values in text that lcgee is about to write: executed notebooks, ``run.json``, logs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["SECRET_ENV_VARS", "secret_values", "redact"]

#: Environment variables known to hold secrets (values are never written anywhere).
SECRET_ENV_VARS = (
    "PC_SDK_SUBSCRIPTION_KEY",
    "EARTHENGINE_TOKEN",
    "EE_PRIVATE_KEY",
    "GOOGLE_API_KEY",
)
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_MIN_LEN = 8
REDACTED = "***redacted***"


def _credential_file_values() -> list[str]:
    """Refresh tokens and private keys from the Earth Engine / Google credential files."""
    paths = [Path.home() / ".config" / "earthengine" / "credentials"]
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        paths.append(Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]))
    values: list[str] = []
    for p in paths:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        for k in ("refresh_token", "private_key", "private_key_id", "client_secret"):
            if isinstance(data.get(k), str):
                values.append(data[k])
    return values


def secret_values() -> list[str]:
    """Every secret value visible to this process, longest first."""
    values = {v for k, v in os.environ.items()
              if (k in SECRET_ENV_VARS or _SECRET_NAME.search(k)) and len(v) >= _MIN_LEN}
    values.update(v for v in _credential_file_values() if len(v) >= _MIN_LEN)
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    """``text`` with every secret value (and its JSON-escaped form) replaced."""
    for v in secret_values() if values is None else values:
        text = text.replace(v, REDACTED)
        escaped = json.dumps(v)[1:-1]
        if escaped != v:
            text = text.replace(escaped, REDACTED)
    return text
