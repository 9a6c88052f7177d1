"""The engine's secrets on disk: the FastPath HMAC secret, the HTTP API's
tokens and the embedded nats-server's credentials, all in the data dir, mode 0600, owned by the
engine's user.

- `<data>/hmac.secret`: `TITAN_HMAC_SECRET` when configured, else a random
  one made on first start, which every part of the engine and the CLI read.
- `<data>/api.token`, `<data>/operator.token`: the HTTP API's read and
  operator bearer tokens (`[http] api_token` / `operator_token`, else
  random ones made on first start).
- `<data>/nats.auth`: user and password of the embedded nats-server, made on
  first start; the server's config and every titan client use them.

A secret file is opened with `O_NOFOLLOW` and trusted only when it belongs to
our uid and nobody else may read or write it (`runtime.files`); `redact_url`
takes the password out of a URL before it is logged or shown.

Failure: `read_secret` raises FileNotFoundError when neither exists (the
engine never started on that data dir); `UnsafeFileError` (an OSError
naming the file and what is wrong) for a file with the wrong owner, mode or
type.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from titan_actors.runtime.files import UnsafeFileError, read_private, write_private

__all__ = [
    "API_TOKEN_FILE",
    "NATS_AUTH_FILE",
    "OPERATOR_TOKEN_FILE",
    "SECRET_FILE",
    "UnsafeFileError",
    "ensure_nats_auth",
    "ensure_secret",
    "nats_client_url",
    "read_nats_auth",
    "read_secret",
    "redact_url",
]

SECRET_FILE = "hmac.secret"
API_TOKEN_FILE = "api.token"
OPERATOR_TOKEN_FILE = "operator.token"
NATS_AUTH_FILE = "nats.auth"


def read_secret(data_dir: str | os.PathLike[str], configured: str = "", *, name: str = SECRET_FILE) -> bytes:
    """The configured value, else the one in `<data>/<name>`."""
    if configured:
        return configured.encode()
    return read_private(Path(data_dir) / name).strip()


def ensure_secret(data_dir: Path, configured: str, *, name: str = SECRET_FILE) -> bytes:
    """The secret (or token), creating `<data>/<name>` (32 random bytes, hex)
    if it is not configured and there is none yet."""
    try:
        return read_secret(data_dir, configured, name=name)
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    write_private(data_dir / name, secret)
    return secret


def read_nats_auth(data_dir: str | os.PathLike[str]) -> dict[str, str]:
    """`{"user": ..., "password": ...}` of the embedded nats-server."""
    auth = json.loads(read_private(Path(data_dir) / NATS_AUTH_FILE))
    return {"user": str(auth["user"]), "password": str(auth["password"])}


def ensure_nats_auth(data_dir: Path) -> dict[str, str]:
    try:
        return read_nats_auth(data_dir)
    except FileNotFoundError:
        pass
    auth = {"user": "titan", "password": secrets.token_urlsafe(32)}
    write_private(data_dir / NATS_AUTH_FILE, json.dumps(auth).encode())
    return auth


def redact_url(url: str) -> str:
    """`url` without its password (or token) in the user-info part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    shown = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    return urlunsplit(parts._replace(netloc=shown))


def nats_client_url(url: str, data_dir: str | os.PathLike[str]) -> str:
    """`url` with the embedded server's credentials of `data_dir` added, when
    it has none of its own and the data dir has them."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    try:
        auth = read_nats_auth(data_dir)
    except FileNotFoundError:
        return url
    return urlunsplit(parts._replace(netloc=f"{auth['user']}:{auth['password']}@{parts.netloc}"))
