"""Opening a thespian `multiprocTCPBase` system the way the engine needs it.

One function for the engine, the benchmark and the tests:

- its TCP sockets listen on loopback only. Thespian unpickles whatever
  arrives on them, and it binds "external" addresses to every interface
  (`bindname = ('', port)` in `IPActorAddress`; `THESPIAN_BASE_IPADDR` only
  changes the address it advertises). We measured it: every actor listened
  on 0.0.0.0. `bind_loopback()` rewrites that one attribute after thespian
  computes it; actor processes are forked from this one, so they inherit it.
- the intermediate process thespian uses to daemonize the Admin is reaped,
  or it stays a zombie in the actors' process group.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

__all__ = ["LOOPBACK", "bind_loopback", "open_actor_system"]

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


def open_actor_system(*, admin_port: int, log_defs: dict[str, Any]) -> Any:
    from thespian.actors import ActorSystem

    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    bind_loopback()
    asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": admin_port},
                       logDefs=log_defs, transientUnique=True)
    multiprocessing.active_children()
    return asys
