"""The engine's log lines: JSON, one per record, with who logged it.

Every process of the engine installs `install_context(worker)` at start: a
log record then carries `worker`, the `role` of the actor whose handler
logged it, and — while a message that names them is handled — its
`signal_id` and `client_order_id` (set around each handler, `handling` and
`handled`). Thespian forwards records from the workers to its logging
process whole, so `JsonFormatter` there writes those fields beside the
timestamp (UTC, ISO 8601), level, logger and message, and the traceback of
an exception as `exc`. Fields that are not known are left out.

Failure: a record that cannot be formatted as JSON is written with its
message as text (`repr`), never dropped.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from typing import Any

import orjson

__all__ = ["JsonFormatter", "handled", "handling", "install_context"]

_ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("titan_role", default="")
_IDS: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("titan_ids", default=("", ""))
_CONTEXT_FIELDS = ("worker", "role", "signal_id", "client_order_id")


#: A logger made at import, so that `install_context` can find the logging
#: manager the modules' loggers were made in.
_PROBE = logging.getLogger(__name__)


def _adopt_module_loggers() -> None:
    """Thespian gives each actor process a fresh logging root (its forwarder to
    the logging process) and manager; the modules' loggers, made at import in
    a parent process before the fork, still hang off the old root, so their
    records never reached the logging process. Move them under the new one."""
    old, manager = _PROBE.manager, logging.Logger.manager
    if old is manager:
        return
    for name, logger in list(old.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.manager = manager
            if logger.parent is old.root:
                logger.parent = logging.root
            logger._cache.clear()
        manager.loggerDict.setdefault(name, logger)


def install_context(worker: str) -> None:
    """From now on, records made in this process carry the context above, and
    reach thespian's logging process."""
    _adopt_module_loggers()
    _ROLE.set("")  # a forked process starts with what its parent was handling
    _IDS.set(("", ""))
    previous = logging.getLogRecordFactory()
    if getattr(previous, "titan_context", False):
        previous = previous.base  # type: ignore[attr-defined]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.worker = worker
        record.role = _ROLE.get()
        record.signal_id, record.client_order_id = _IDS.get()
        return record

    factory.titan_context = True  # type: ignore[attr-defined]
    factory.base = previous  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def handling(role: str, msg: Any) -> tuple[contextvars.Token[str], contextvars.Token[tuple[str, str]]]:
    """An actor begins to handle `msg`: its role, and the ids the message
    names, until `handled(tokens)`. (Two calls, not a context manager: this
    is on every message's path.)"""
    signal_id = getattr(msg, "signal_id", "")
    coid = getattr(msg, "client_order_id", "")
    return _ROLE.set(role), _IDS.set((signal_id if isinstance(signal_id, str) else "",
                                      coid if isinstance(coid, str) else ""))


def handled(tokens: tuple[contextvars.Token[str], contextvars.Token[tuple[str, str]]]) -> None:
    role_token, ids_token = tokens
    _IDS.reset(ids_token)
    _ROLE.reset(role_token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, "")
            if value:
                line[name] = value
        line["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        try:
            return orjson.dumps(line, default=str).decode()
        except (TypeError, ValueError):
            return repr(line)
