"""The FastPath HMAC secret: configured (`TITAN_HMAC_SECRET`), or a random one
the engine creates in `<data>/hmac.secret` (mode 0600) on first start, which
every part of the engine and the CLI read from there.

Failure: `read_secret` raises FileNotFoundError when neither exists (the
engine never started on that data dir).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["SECRET_FILE", "ensure_secret", "read_secret"]

SECRET_FILE = "hmac.secret"


def read_secret(data_dir: str | os.PathLike[str], configured: str = "") -> bytes:
    if configured:
        return configured.encode()
    return (Path(data_dir) / SECRET_FILE).read_bytes().strip()


def ensure_secret(data_dir: Path, configured: str) -> bytes:
    """The secret, creating `<data>/hmac.secret` if there is none yet."""
    try:
        return read_secret(data_dir, configured)
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    fd = os.open(data_dir / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret
