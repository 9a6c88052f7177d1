"""Opening a thespian `multiprocTCPBase` system the way the engine needs it.

One function for the engine, the benchmark and the tests:

- its TCP sockets listen on loopback only. Thespian unpickles whatever
  arrives on them, and it binds "external" addresses to every interface
  (`bindname = ('', port)` in `IPActorAddress`; `THESPIAN_BASE_IPADDR` only
  changes the address it advertises). We measured it: every actor listened
  on 0.0.0.0. `bind_loopback()` rewrites that one attribute after thespian
  computes it; actor processes are forked from this one, so they inherit it.
- only the engine's own processes get in (`sign_transport`): every message
  thespian sends carries HMAC-SHA256 under a key made at random in the
  process that opens the system; the Admin and every worker are forked from
  it and inherit the key, which never touches a disk or an environment. A
  message without a valid MAC is refused before it is unpickled
  (docs/design.md says why not the peer's uid).
- the intermediate process thespian uses to daemonize the Admin is reaped,
  or it stays a zombie in the actors' process group.

Failure: an unsigned message is logged (a warning here, and thespian's
"Error deserializing") and answered with thespian's data-error ack; nothing
of it is unpickled and the receiving process carries on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import multiprocessing
import os
import pickle
import secrets
from typing import Any

__all__ = ["LOOPBACK", "SignedPickle", "bind_loopback", "open_actor_system", "sign_transport"]

log = logging.getLogger(__name__)

_MAC = 32

LOOPBACK = "127.0.0.1"


def bind_loopback() -> None:
    """Make thespian bind every TCP socket to 127.0.0.1 (idempotent)."""
    from thespian.system.transport import IPBase

    cls = IPBase.IPActorAddress
    if getattr(cls, "_titan_loopback", False):
        return
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.bindname and self.bindname[0] in ("", "0.0.0.0"):
            self.bindname = (LOOPBACK, *self.bindname[1:])

    cls.__init__ = __init__
    cls._titan_loopback = True


class SignedPickle:
    """Thespian's TCP serializer with a MAC: `dumps` prefixes HMAC-SHA256(key,
    pickle); `loads` refuses (ValueError, before unpickling) anything whose
    MAC does not match. Thespian's two constant acknowledgements ("ACK",
    "ACK+DATAERR"), pickled without a MAC by thespian itself, are recognised
    by their exact bytes and never unpickled."""

    __slots__ = ("_control", "_key")

    def __init__(self, key: bytes) -> None:
        from thespian.system.transport.streamBuffer import ackDataErrPacket, ackPacket

        self._key = key
        self._control = {pickle.dumps(p): p for p in (ackPacket, ackDataErrPacket)}

    def dumps(self, obj: Any) -> bytes:
        data = pickle.dumps(obj)
        return hmac.new(self._key, data, hashlib.sha256).digest() + data

    def loads(self, data: bytes) -> Any:
        control = self._control.get(bytes(data))
        if control is not None:
            return control
        mac, body = data[:_MAC], data[_MAC:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if len(mac) != _MAC or not hmac.compare_digest(mac, expected):
            log.warning("thespian: refused a message without the engine's MAC (%d bytes)", len(data))
            raise ValueError("not signed with the engine's transport key")
        return pickle.loads(body)


def sign_transport(key: bytes | None = None) -> None:
    """Make thespian's TCP transport in this process, and in every process
    forked from it, sign what it sends and refuse what is not signed
    (idempotent: the first key stays)."""
    from thespian.system.transport import TCPTransport

    if isinstance(TCPTransport.serializer, SignedPickle):
        return
    TCPTransport.serializer = SignedPickle(key or secrets.token_bytes(32))


def open_actor_system(*, admin_port: int, log_defs: dict[str, Any]) -> Any:
    from thespian.actors import ActorSystem

    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    bind_loopback()
    sign_transport()
    asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": admin_port},
                       logDefs=log_defs, transientUnique=True)
    multiprocessing.active_children()
    return asys
