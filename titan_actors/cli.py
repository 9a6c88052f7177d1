"""The `titan` command line.

    titan run                 start the engine in the foreground
    titan status [--json]     the tree: role, pid, restarts, state
    titan stop                stop the engine of this data dir
    titan bench lanes         FastLane against thespian, msgs/s and round trips

Every command takes `--config FILE` (default `./titan.toml` if present) and
`--data-dir DIR` (overrides `TITAN_DATA_DIR` and the file). Errors are one
line on stderr naming what is wrong, and a non-zero exit code: 2 for bad
usage or config, 1 for an engine that is not running or refused to start.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from titan_actors.config import Config, ConfigError, load_config
from titan_actors.runtime.clock import now_ms
from titan_actors.secret import redact_url
from titan_actors.tools.control import ControlError, ControlServer, EngineNotRunning, control_request

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAIL = 1


def _config(args: argparse.Namespace) -> Config:
    env = dict(os.environ)
    if getattr(args, "data_dir", None):
        env["TITAN_DATA_DIR"] = args.data_dir
    return load_config(args.config, env)


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"titan: {message}", file=sys.stderr)
    return code


class _Refused(Exception):
    """The running engine could not be asked, or refused: `main` prints it and exits non-zero."""


def _json(obj: Any, *, indent: bool = False) -> str:
    """JSON for the terminal: exact numbers (a Decimal as written), optionally indented."""
    import orjson

    from titan_actors.domain.money import json_default

    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(obj, default=json_default, option=option).decode()


def _ask(data_dir: Path, request: dict[str, Any], failed: str, *, exact: bool = False) -> dict[str, Any]:
    """The engine's answer to one control request; `_Refused` naming what
    failed when no engine runs on `data_dir` or it refused."""
    try:
        return control_request(data_dir, request, exact=exact)
    except EngineNotRunning as exc:
        raise _Refused(str(exc)) from exc
    except ControlError as exc:
        raise _Refused(f"{failed}: {exc}") from exc


# --- titan run ------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from supervisors.bootstrap import Engine, EngineError
    from supervisors.embedded_nats import NatsServerError

    config = _config(args)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = Engine(config)
    try:
        engine.start()
    except (EngineError, NatsServerError, OSError) as exc:
        return _fail(f"cannot start: {exc}")
    try:
        server = ControlServer(engine.data_dir)
    except OSError as exc:
        engine.stop()
        return _fail(f"cannot open the control socket: {exc}")
    engine.publish()
    _announce(engine)
    try:
        while not stopping:
            server.poll(0.1, lambda request: _control(engine, request, stopping))
            fatal = engine.check()
            if fatal is not None:
                print(f"titan: fatal: {fatal.reason}; killing the engine's processes", file=sys.stderr)
                engine.kill_actors()
                engine.stop(timeout=1)
                return fatal.exit_code
    finally:
        server.close()
    print("titan: stopping (tree in reverse order, then NATS)", flush=True)
    engine.stop()
    print("titan: stopped", flush=True)
    return 0


def _announce(engine: Any) -> None:
    url = redact_url(engine.nats_url)
    nats = f"{url} (embedded, pid {engine.nats.pid})" if engine.nats else url
    print(
        f"titan: engine {engine.engine_id} running (pid {os.getpid()}, actors' process group "
        f"{engine.actors_pgid})\n"
        f"  FastPath socket: {engine.config['ipc.socket']}\n"
        f"  data:            {engine.data_dir}\n"
        f"  NATS:            {nats}\n"
        f"  logs:            {engine.data_dir / 'logs'}\n"
        f"  stop with Ctrl-C, SIGTERM or `titan stop`",
        flush=True,
    )


def _control(engine: Any, request: dict[str, Any], stopping: list[int]) -> dict[str, Any]:
    from titan_actors.domain.money import to_decimal, to_decimal_or_none
    from titan_actors.messages import (
        EvaluateOrder,
        Evaluation,
        InjectFault,
        PaperAdjust,
        PaperPlace,
        PolicyReplaced,
        PriceUpdate,
        Relay,
        RelayResult,
        ReplacePolicy,
        SetTradingState,
        SetVenueOutage,
        StatusRequest,
        TradingStateSet,
        VenueOrders,
        VenueOrdersRequest,
    )

    cmd = request.get("cmd")
    if cmd == "status":
        return {"ok": True, **_status_json(engine)}
    if cmd == "stop":
        stopping.append(0)
        return {"ok": True}
    if cmd == "kill":
        return {"ok": True, **engine.kill(str(request["role"]), worker=bool(request.get("worker")))}
    if cmd == "relay":
        relay = Relay(uuid.uuid4().hex, str(request["target"]), str(request.get("via", "lane")))
        result = engine.ask_role(str(request["from"]), relay, timeout=3.0)
        if not isinstance(result, RelayResult):
            return {"ok": False, "error": f"no relay result: {result!r}"}
        return {"ok": True, "reached": result.ok, "pid": result.pid, "via": result.via,
                "arrived_by": result.arrived_by, "reason": result.reason}
    if cmd == "fault":
        fault = InjectFault(str(request.get("reason", "operator")), str(request.get("at", "")),
                            str(request.get("kill", "worker")))
        if fault.at == "pause":  # answered once it holds its messages: nothing after this gets in
            if engine.ask_role(str(request["role"]), fault, timeout=3.0) is None:
                return {"ok": False, "error": f"{request['role']} did not say it paused"}
            return {"ok": True}
        engine.tell_role(str(request["role"]), fault)
        if fault.at:
            # Armed before we answer: thespian keeps the order of one sender's messages.
            engine.ask_role(str(request["role"]), StatusRequest(), timeout=3.0)
        return {"ok": True}
    if cmd == "trading_state":
        state = SetTradingState(str(request["mode"]), str(request["scope"]), str(request["reason"]),
                                str(request["operator"]))
        reply = engine.ask_role("risk", state, timeout=5.0)
        if not isinstance(reply, TradingStateSet):
            return {"ok": False, "error": "the risk guard did not answer; the state is not known to be set"}
        answer = {"ok": True, "trading_state": reply.trading_state, "scope": reply.scope,
                  "states": reply.states, "unconfirmed": list(reply.unconfirmed)}
        if request.get("cancel_open"):  # halted first: nothing new goes out while the old are canceled
            answer["canceled"] = _cancel_open(engine, request)
        return answer
    if cmd == "ledger":  # `titan report`: the ledger's answer to one read query
        from titan_actors.messages import CommandReply, LedgerQuery

        reply = engine.ask_role("ledger", LedgerQuery(str(request["path"]), dict(request.get("params") or {}),
                                                      uuid.uuid4().hex), timeout=10.0)
        if not isinstance(reply, CommandReply):
            return {"ok": False, "error": "the ledger did not answer"}
        if "error" in reply.reply:
            return {"ok": False, "error": reply.reply.get("reason", reply.reply["error"])}
        return {"ok": True, "answer": reply.reply}
    if cmd == "cancel_all":
        return {"ok": True, **_cancel_open(engine, request)}
    if cmd == "flatten":
        return {"ok": True, **_cancel_open(engine, request, flatten=True)}
    if cmd == "risk_check":
        from titan_actors.domain.signals import Refusal, parse_intent

        venues = {name: frozenset(v["symbols"]) for name, v in engine.config.venues.items()}
        intent = parse_intent(request["order"], venues=venues,
                              default_venue=engine.config["routing.default_venue"])
        if isinstance(intent, Refusal):
            return {"ok": False, "error": intent.reason}
        evaluation = engine.ask_role("risk", EvaluateOrder(intent), timeout=5.0)
        if not isinstance(evaluation, Evaluation):
            return {"ok": False, "error": "the risk guard did not answer"}
        return {"ok": True, "state": evaluation.state, "exposure": evaluation.exposure,
                "verdicts": [{"rule": r, "ok": ok, "reason": why} for r, ok, why in evaluation.verdicts]}
    if cmd == "risk_reload":
        from titan_actors.config import ConfigError, load_config

        try:
            fresh = load_config(engine.config.source, dict(os.environ))
        except ConfigError as exc:
            return {"ok": False, "error": str(exc)}
        replaced = engine.ask_role("risk", ReplacePolicy(fresh.sections["risk"]), timeout=5.0)
        if not isinstance(replaced, PolicyReplaced) or not replaced.ok:
            return {"ok": False, "error": getattr(replaced, "error", "the risk guard did not answer")}
        return {"ok": True, "policy": replaced.policy}
    if cmd in ("paper_adjust", "paper_place"):
        venue = f"venue:{request.get('venue', 'paper')}"
        if cmd == "paper_adjust":
            msg = PaperAdjust(str(request["symbol"]), to_decimal(request["qty"], field="qty"),
                              to_decimal(request["avg_price"], field="avg_price"))
        else:
            spec = dict(request["spec"])
            msg = PaperPlace({**spec, "quantity": to_decimal(spec["quantity"], field="spec.quantity"),
                              **{k: to_decimal_or_none(spec.get(k), field=f"spec.{k}")
                                 for k in ("price", "trigger_price")}})
        engine.tell_role(venue, msg)
        engine.ask_role(venue, StatusRequest(), timeout=3.0)
        return {"ok": True}
    if cmd == "venue_orders":
        audit = engine.ask_role(f"venue:{request.get('venue', 'paper')}", VenueOrdersRequest(), timeout=10.0)
        if not isinstance(audit, VenueOrders):
            return {"ok": False, "error": "the adapter did not answer"}
        return {"ok": True, "venue": audit.venue, "journal": audit.journal, "positions": audit.positions}
    if cmd == "venue_outage":
        engine.tell_role(f"venue:{request.get('venue', 'paper')}", SetVenueOutage(bool(request["down"])))
        engine.ask_role(f"venue:{request.get('venue', 'paper')}", StatusRequest(), timeout=3.0)
        return {"ok": True}
    if cmd == "price":
        bid, ask, last = (to_decimal(request[k], field=k) for k in ("bid", "ask", "last"))
        quote = PriceUpdate(str(request["symbol"]), bid, ask, last, now_ms())
        engine.tell_role(f"venue:{request.get('venue', 'paper')}", quote)
        # Handled before we answer (thespian keeps the order of one sender's
        # messages): the caller's next order meets this price.
        engine.ask_role(f"venue:{request.get('venue', 'paper')}", StatusRequest(), timeout=3.0)
        return {"ok": True}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


def _cancel_open(engine: Any, request: dict[str, Any], *, flatten: bool = False) -> dict[str, Any]:
    """Every venue adapter of the scope cancels its open orders (and, with
    `flatten`, closes its positions); what each did, and the adapters that
    did not answer."""
    from supervisors.bootstrap import EngineError
    from titan_actors.messages import (
        CancelOpenOrders,
        FlattenPositions,
        OpenOrdersCanceled,
        PositionsFlattened,
    )

    scope = str(request.get("scope", "global"))
    kind, _, name = scope.partition(":")
    venues = [name] if kind == "venue" else list(engine.config.venues)
    kind_of = FlattenPositions if flatten else CancelOpenOrders
    message = kind_of(scope, str(request["reason"]), str(request["operator"]))
    done: dict[str, dict[str, list[str]]] = {}
    unanswered = []
    for venue in venues:
        try:
            reply = engine.ask_role(f"venue:{venue}", message, timeout=5.0)
        except EngineError:  # restarting: no address now
            reply = None
        if isinstance(reply, OpenOrdersCanceled | PositionsFlattened):
            done[venue] = reply.summary()
        else:
            unanswered.append(venue)
    return {"scope": scope, "venues": done, "unanswered": unanswered}


def _status_json(engine: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "engine_id": engine.engine_id,
        "pid": os.getpid(),
        "actors_pgid": engine.actors_pgid,
        "root_restarts": engine.root_restarts,
        "nats_url": redact_url(engine.nats_url),
        "nats_pid": engine.nats.pid if engine.nats else 0,
        "nats_monitor_url": engine.nats.monitor_url if engine.nats else "",
        "nats_restarts": engine.nats.restarts if engine.nats else 0,
        "socket": engine.config["ipc.socket"],
        "data_dir": str(engine.data_dir),
    }
    tree = engine.tree_status()
    if tree is None:
        return {**status, "state": "unknown", "actors": [], "missing": ["root"], "ready": False,
                "components": {"actors": {"ok": False, "reason": "the root supervisor did not answer"}},
                "error": "the root supervisor did not answer", "directory_version": 0}
    actors = [
        {"role": a.role, "worker": a.worker, "pid": a.pid, "state": a.state, "restarts": a.restarts,
         "started_at": a.started_at, "detail": a.detail}
        for a in sorted(tree.actors, key=lambda a: _role_order(a.role))
    ]
    from supervisors.tree import expected_roles
    from titan_actors.domain.health import health

    verdict = health(actors, tree.missing, expected_roles(engine.config))
    http_url = next((a["detail"].get("http_url", "") for a in actors if a["role"] == "http"), "")
    return {**status, "state": tree.state, "directory_version": tree.directory_version, "http_url": http_url,
            "ready": verdict.ready, "components": verdict.components,
            "actors": actors, "missing": list(tree.missing)}


def _role_order(role: str) -> tuple[int, str]:
    order = ["root", "nats", "risk", "venues", "venue:", "positions", "position:", "http", "gateway"]
    for i, prefix in enumerate(order):
        if role == prefix or (prefix.endswith(":") and role.startswith(prefix)):
            return i, role
    return len(order), role


# --- titan status / stop --------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    reply = _ask(config.data_dir, {"cmd": "status"}, "status failed")
    reply.pop("ok", None)
    failing = {name: c["reason"] for name, c in reply["components"].items() if not c["ok"]}
    verdict = 0 if reply["ready"] or not args.check else EXIT_FAIL
    if args.check:
        for name, reason in failing.items():
            print(f"titan: not ready: {name}: {reason}", file=sys.stderr)
    if args.json:
        print(_json(reply, indent=True))
        return verdict
    print(f"engine {reply['engine_id']}  state {reply['state']}  pid {reply['pid']}  "
          f"NATS {reply['nats_url']}  ready {'yes' if reply['ready'] else 'no'}")
    for name, reason in failing.items():
        print(f"  not ready: {name}: {reason}")
    print(f"{'ROLE':<24} {'WORKER':<16} {'PID':>8} {'RESTARTS':>8}  {'STATE':<10} UP")
    now = time.time()
    for actor in reply["actors"]:
        up = now - actor["started_at"] if actor["started_at"] else 0
        print(f"{actor['role']:<24} {actor['worker']:<16} {actor['pid']:>8} {actor['restarts']:>8}  "
              f"{actor['state']:<10} {up:.0f}s")
    for role in reply["missing"]:
        print(f"{role:<24} {'-':<16} {'-':>8} {'-':>8}  {'no answer':<10}")
    return verdict


def cmd_kill(args: argparse.Namespace) -> int:
    config = _config(args)
    reply = _ask(config.data_dir, {"cmd": "kill", "role": args.role, "worker": args.worker}, "kill failed")
    what = f"worker {reply['worker']} (pid {reply['pid']})" if args.worker else \
        f"actor {reply['role']} in worker {reply['worker']} (pid {reply['pid']})"
    print(f"titan: killed {what}; its supervisor restarts it")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    config = _config(args)
    _ask(config.data_dir, {"cmd": "stop"}, "stop failed")
    # The control socket closes early; the engine is gone when it lets go of
    # its data-dir lock (the kernel drops it when the process exits).
    lock = config.data_dir / "run" / "titan.lock"
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if _lock_is_free(lock):
            print("titan: engine stopped")
            return 0
        time.sleep(0.1)
    return _fail(f"the engine did not stop within {args.timeout}s")


def _lock_is_free(path: Path) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# --- titan bench ----------------------------------------------------------------


def cmd_bench_lanes(args: argparse.Namespace) -> int:
    from titan_actors.tools.bench_lanes import bench_lanes, format_lanes

    results = bench_lanes(lane_count=args.count, thespian_count=args.thespian_count, rtt=args.rtt)
    if args.json:
        print(_json(results, indent=True))
    else:
        print(format_lanes(results))
    return 0


def cmd_bench_fastpath(args: argparse.Namespace) -> int:
    from titan_actors.tools.bench_fastpath import format_fastpath, run_fastpath_bench

    secret = None
    socket_path = args.socket
    if socket_path:
        from titan_actors.client import FastPathError, load_secret

        try:
            secret = load_secret(args.data_dir)
        except FastPathError as exc:
            return _fail(str(exc))
    rate = None if args.rate == "max" else float(args.rate)
    result = run_fastpath_bench(rate=rate, duration=args.duration, connections=args.connections,
                                socket_path=socket_path, secret=secret, data_dir=args.data_dir,
                                profile=args.profile, fsync=args.fsync == "on")
    print(_json(result, indent=True) if args.json else format_fastpath(result))
    return 0


# --- titan halt / resume / events ----------------------------------------------------


def cmd_trading_state(args: argparse.Namespace) -> int:
    from titan_actors.domain.trading_state import valid_scope

    config = _config(args)
    if not valid_scope(args.scope):
        return _fail("--scope: must be global, venue:NAME or symbol:SYMBOL", EXIT_USAGE)
    mode = args.mode if args.command == "halt" else "ACTIVE"
    request = {"cmd": "trading_state", "mode": mode, "scope": args.scope, "reason": args.reason,
               "operator": args.operator, "cancel_open": bool(getattr(args, "cancel_open", False))}
    reply = _ask(config.data_dir, request, f"{args.command} failed")
    reply.pop("ok", None)
    print(_json(reply))
    if reply.get("unconfirmed"):
        late = ", ".join(reply["unconfirmed"])
        print(f"titan: warning: set and persisted, but not yet confirmed by {late} "
              "(each applies it before it sends anything after a restart)", file=sys.stderr)
    return 0


def cmd_cancel_all(args: argparse.Namespace) -> int:
    from titan_actors.domain.trading_state import valid_scope

    config = _config(args)
    if not valid_scope(args.scope):
        return _fail("--scope: must be global, venue:NAME or symbol:SYMBOL", EXIT_USAGE)
    cmd = "flatten" if args.command == "flatten" else "cancel_all"
    request = {"cmd": cmd, "scope": args.scope, "reason": args.reason, "operator": args.operator}
    reply = _ask(config.data_dir, request, f"{args.command} failed")
    reply.pop("ok", None)
    print(_json(reply))
    if reply["unanswered"]:
        late = ", ".join(reply["unanswered"])
        return _fail(f"no answer from the adapter of {late}: its orders may still rest")
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    import asyncio

    from supervisors.bootstrap import read_engine_file
    from titan_actors.actors.nats_bridge import connect_options
    from titan_actors.secret import NATS_AUTH_FILE
    from titan_actors.tools.events_tail import TailError, parse_since, tail
    from titan_actors.wire.subjects import EVENT_SUBJECTS

    config = _config(args)
    if args.nats_url or config["nats.url"]:
        nats_config = {**config.sections["nats"], "url": args.nats_url or config["nats.url"]}
    else:  # the running engine's embedded server, with its credentials
        url = (read_engine_file(config.data_dir) or {}).get("nats_url")
        if not url:
            return _fail("no NATS URL: give --nats-url, set NATS_URL, or run the engine on this data dir")
        nats_config = {"url": url, "auth_file": str(config.data_dir / NATS_AUTH_FILE)}
    try:
        options = connect_options(nats_config)
    except OSError as exc:  # UnsafeFileError too
        return _fail(f"NATS credentials: {exc}")
    try:
        since = parse_since(args.since)
        asyncio.run(tail(options, args.subject or list(EVENT_SUBJECTS), stream=config["nats.stream"],
                         since=since, count=args.count, timeout=args.timeout))
    except TailError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_risk_check(args: argparse.Namespace) -> int:
    config = _config(args)
    order = {"signal_id": "risk-check", "symbol": args.symbol, "side": args.side, "quantity": args.quantity,
             "order_type": args.order_type, "reduce_only": args.reduce_only}
    for key in ("price", "exchange", "strategy_id"):
        if getattr(args, key) is not None:
            order[key] = getattr(args, key)
    reply = _ask(config.data_dir, {"cmd": "risk_check", "order": order}, "risk check")
    if args.json:
        reply.pop("ok", None)
        print(_json(reply, indent=True))
        return 0
    print(f"trading state {reply['state']}; exposure {_json(reply['exposure'])}")
    for verdict in reply["verdicts"]:
        mark = "PASS" if verdict["ok"] else "FAIL"
        print(f"{mark}  {verdict['rule']:<24} {verdict['reason']}")
    return 0 if all(v["ok"] for v in reply["verdicts"]) else 1


def cmd_risk_reload(args: argparse.Namespace) -> int:
    config = _config(args)
    reply = _ask(config.data_dir, {"cmd": "risk_reload"}, "risk reload refused, the old policy stays")
    print(_json(reply["policy"], indent=True))
    return 0


def _actors(args: argparse.Namespace, prefix: str) -> list[dict[str, Any]]:
    """The running engine's actors whose role starts with `prefix`, their
    quantities and prices exact (Decimals: printed as the engine has them)."""
    status = _ask(_config(args).data_dir, {"cmd": "status"}, "status failed", exact=True)
    return [a for a in status["actors"] if a["role"].startswith(prefix)]


def cmd_venues(args: argparse.Namespace) -> int:
    actors = _actors(args, "venue:")
    rows = [_venue_row(a) for a in actors]
    if args.json:
        print(_json(rows, indent=True))
        return 0
    print(f"{'VENUE':<12} {'EXCHANGE':<9} {'MARKET':<7} {'CONNECTION':<11} {'STREAM':<10} {'RATE/S':>7} "
          f"{'HEADROOM':>8} {'QUEUED':>6} {'IN FLIGHT':>9}  LAST ERROR")
    for row in rows:
        rate = row["rate_limit"]
        print(f"{row['venue']:<12} {row['exchange']:<9} {row['market']:<7} {row['connection']:<11} "
              f"{row['stream']:<10} {rate.get('limit_per_s', 0):>7g} {rate.get('headroom', 0):>8g} "
              f"{rate.get('queued', 0):>6} {len(row['in_flight']):>9}  {row['last_error'] or '-'}")
        if row["stream_error"]:
            print(f"    stream: {row['stream_error']}")
        for order in row["in_flight"]:
            print(f"    {order['client_order_id']}  {order['symbol']}  {order['status']}  "
                  f"{order['age_ms']} ms")
    return 0


def _venue_row(actor: dict[str, Any]) -> dict[str, Any]:
    detail = actor["detail"]
    connection = "ready" if detail["exchange"] == "paper" else detail.get("connection", "")
    return {"venue": detail["venue"], "exchange": detail["exchange"], "market": detail.get("market", ""),
            "connection": "down" if detail.get("down") else connection,
            "rate_limit": detail.get("rate_limit", {}), "last_error": detail.get("last_error", ""),
            "consecutive_errors": detail.get("consecutive_errors", 0),
            "stream": detail.get("stream", "-"), "stream_error": detail.get("stream_error", ""),
            "in_flight": detail.get("in_flight", []), "live_orders": detail.get("live_orders", 0)}


def cmd_positions(args: argparse.Namespace) -> int:
    actors = _actors(args, "position:")
    rows = [(a["detail"]["symbol"], venue,
             {**view, "reconciled": (a["detail"].get("reconciled") or {}).get(venue)})
            for a in actors for venue, view in a["detail"].get("venues", {}).items()]
    if args.json:
        print(_json([{"symbol": s, "venue": v, **view} for s, v, view in rows], indent=True))
        return 0
    print(f"{'SYMBOL':<10} {'VENUE':<10} {'QTY':>12} {'ENTRY':>12} {'REALISED':>12} {'UNREALISED':>12} "
          f"{'FEES':>10} {'OPEN':>5}  RECONCILED")
    for symbol, venue, v in rows:
        print(f"{symbol:<10} {venue:<10} {v['qty']:>12.6g} {v['avg_entry']:>12.6g} "
              f"{v['realised_pnl']:>12.2f} {v['unrealised_pnl']:>12.2f} {v['fees']:>10.2f} "
              f"{v['open_orders']:>5}  {_reconciliation(v['reconciled'])}")
    return 0


def _reconciliation(result: dict[str, Any] | None) -> str:
    if not result:
        return "not yet"
    age = time.time() - result["at"] / 1000
    return f"{result['result']} ({age:.0f}s ago, {result['corrections']} corrections)"


def cmd_chaos(args: argparse.Namespace) -> int:
    from titan_actors.tools.chaos import DEFAULT_ROLES, run_chaos

    roles = args.roles.split(",") if args.roles else list(DEFAULT_ROLES)
    unknown = [r for r in roles if r not in DEFAULT_ROLES]
    if unknown:
        return _fail(f"--roles: unknown {', '.join(unknown)} (known: {', '.join(DEFAULT_ROLES)})", EXIT_USAGE)
    result = run_chaos(duration=args.duration, rate=args.rate, kill_every_ms=args.kill_every, roles=roles,
                       seed=args.seed, profile=args.profile)
    print(_json(result.as_dict(), indent=True) if args.json else result.text(), flush=True)
    return 0 if result.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    import datetime as dt

    from titan_actors.tools.events_tail import TailError, parse_since
    from titan_actors.tools.report import write_report

    try:
        since = parse_since(args.since)
    except TailError as exc:
        return _fail(str(exc), EXIT_USAGE)
    params: dict[str, Any] = {}
    if isinstance(since, dt.datetime):
        params["start_date"] = since.isoformat()
    if args.symbol:
        params["symbol"] = args.symbol

    data_dir = _config(args).data_dir

    def ask(path: str, extra: dict[str, Any]) -> dict[str, Any]:
        answer = _ask(data_dir, {"cmd": "ledger", "path": path, "params": {**params, **extra}},
                      "the ledger")
        if not answer.get("ok"):
            raise _Refused(f"the ledger: {answer.get('error')}")
        return answer["answer"]

    summary = write_report(ask, Path(args.out))
    print(_json(summary, indent=True) if args.json else summary["text"], flush=True)
    return 0


# --- titan send -------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    from titan_actors.client import FastPathClient, FastPathError, load_secret, prepare_request

    config = _config(args)
    try:
        secret = load_secret(config.data_dir)
    except FastPathError as exc:
        return _fail(str(exc))
    kind = args.kind.upper()
    if kind == "PREPARE":
        fields = {"exchange": args.exchange, "price": args.price, "time_in_force": args.time_in_force,
                  "stop_loss": args.stop_loss, "take_profits": args.take_profit or None,
                  "strategy_id": args.strategy_id, "phase": args.phase, "ttl_ms": args.ttl_ms,
                  "reduce_only": True if args.reduce_only else None}
        request = prepare_request(args.signal_id, args.symbol, args.side, args.quantity, args.order_type,
                                  **fields)
    elif kind == "PING":
        request = {"type": "PING"}
    else:
        request = {"type": kind, "signal_id": args.signal_id}
    try:
        with FastPathClient(config["ipc.socket"], secret, timeout=args.timeout) as client:
            reply = client.request(request)
            print(_json(reply), flush=True)
            deadline = time.monotonic() + (args.follow or 0)
            while time.monotonic() < deadline:
                try:
                    print(_json(client.next_execution(deadline - time.monotonic())), flush=True)
                except TimeoutError:
                    break
    except (OSError, FastPathError, TimeoutError) as exc:
        return _fail(f"send failed: {exc!r}")
    return 1 if reply.get("type") == "REJECTED" else 0


# --- parser -----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: ./titan.toml if present)")
    common.add_argument("--data-dir", help="data directory (overrides TITAN_DATA_DIR and the file)")
    parser = argparse.ArgumentParser(prog="titan", description="Titan execution engine")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the engine in the foreground")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", parents=[common], help="show the actor tree")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--check", action="store_true",
                        help="exit 1 unless the engine is ready to take an order (reasons on stderr)")
    status.set_defaults(func=cmd_status)

    kill = sub.add_parser("kill", parents=[common],
                          help="crash one actor abruptly wherever it runs (or SIGKILL its worker)")
    kill.add_argument("role", help="the actor's role, e.g. risk, venue:paper, position:BTCUSDT, root")
    kill.add_argument("--worker", action="store_true",
                      help="SIGKILL the whole worker process that hosts the role")
    kill.set_defaults(func=cmd_kill)

    stop = sub.add_parser("stop", parents=[common], help="stop the running engine")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    stop.set_defaults(func=cmd_stop)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    lanes = bench_sub.add_parser("lanes", help="FastLane against thespian between two actors")
    lanes.add_argument("--count", type=_positive_int, default=50_000, help="messages over the lane")
    lanes.add_argument("--thespian-count", type=_positive_int, default=2_000,
                       help="messages over thespian (it carries ~600/s)")
    lanes.add_argument("--rtt", type=_positive_int, default=1_000, help="round trips per transport")
    lanes.add_argument("--json", action="store_true")
    lanes.set_defaults(func=cmd_bench_lanes)
    fast = bench_sub.add_parser("fastpath", help="signal latency and throughput through an engine")
    fast.add_argument("--rate", default="1000", help="signals per second, or max (default 1000)")
    fast.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    fast.add_argument("--connections", type=_positive_int, default=4, help="client connections (default 4)")
    fast.add_argument("--socket", help="target a running engine's socket instead of starting one")
    fast.add_argument("--data-dir", help="with --socket: the running engine's data dir (secret, memory)")
    fast.add_argument("--profile", choices=("packed", "isolated"), default="packed",
                      help="placement of the engine it starts (default packed)")
    fast.add_argument("--fsync", choices=("on", "off"), default="on",
                      help="[engine] fsync of the engine it starts: off measures what the syncs cost")
    fast.add_argument("--json", action="store_true")
    fast.set_defaults(func=cmd_bench_fastpath)

    for name, help_text in (("halt", "halt trading (or make it REDUCING) in a scope"),
                            ("resume", "lift a halt in a scope")):
        state = sub.add_parser(name, parents=[common], help=help_text)
        state.add_argument("--reason", required=True)
        state.add_argument("--operator", default=os.environ.get("USER", "operator"))
        state.add_argument("--scope", default="global", help="global (default), venue:NAME or symbol:SYMBOL")
        if name == "halt":
            state.add_argument("--mode", default="HALTED", choices=["HALTED", "REDUCING"])
            state.add_argument("--cancel-open", action="store_true",
                               help="also cancel the scope's resting orders (after the halt is set)")
        state.set_defaults(func=cmd_trading_state)
    for name, help_text in (
            ("cancel-all", "cancel every resting order of a scope (kill switch; trading goes on)"),
            ("flatten", "cancel-all, then close every position of the scope with reduce-only market orders")):
        switch = sub.add_parser(name, parents=[common], help=help_text)
        switch.add_argument("--reason", required=True)
        switch.add_argument("--operator", default=os.environ.get("USER", "operator"))
        switch.add_argument("--scope", default="global", help="global (default), venue:NAME or symbol:SYMBOL")
        switch.set_defaults(func=cmd_cancel_all)

    risk = sub.add_parser("risk", help="the risk guard")
    risk_sub = risk.add_subparsers(dest="risk", required=True)
    check = risk_sub.add_parser("check", parents=[common],
                                help="every rule's verdict for a hypothetical order (nothing is reserved)")
    check.add_argument("--symbol", required=True)
    check.add_argument("--side", required=True, choices=["buy", "sell"])
    check.add_argument("--quantity", required=True, type=float)
    check.add_argument("--order-type", default="market", choices=["market", "limit"])
    check.add_argument("--price", type=float)
    check.add_argument("--exchange")
    check.add_argument("--strategy-id")
    check.add_argument("--reduce-only", action="store_true")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_risk_check)
    reload_cmd = risk_sub.add_parser("reload", parents=[common],
                                     help="read [risk] from the config file again and put it in place")
    reload_cmd.set_defaults(func=cmd_risk_reload)

    venues = sub.add_parser("venues", parents=[common], help="each venue: connection, rate-limit headroom, "
                                                             "last error, journaled in-flight orders")
    venues.add_argument("--json", action="store_true")
    venues.set_defaults(func=cmd_venues)

    positions = sub.add_parser("positions", parents=[common], help="every position with its PnL")
    positions.add_argument("--json", action="store_true")
    positions.set_defaults(func=cmd_positions)

    events = sub.add_parser("events", help="the engine's events on NATS")
    events_sub = events.add_subparsers(dest="events", required=True)
    tail_cmd = events_sub.add_parser("tail", parents=[common], help="print events as they arrive")
    tail_cmd.add_argument("--subject", action="append",
                          help="subject filter (repeatable; default titan.evt.> and execution.trade.closed)")
    tail_cmd.add_argument("--since", help="start in the past: 10m, 2h, all, or an ISO-8601 time")
    tail_cmd.add_argument("--count", type=_positive_int, help="stop after this many events")
    tail_cmd.add_argument("--timeout", type=float, help="stop after this many seconds without an event")
    tail_cmd.add_argument("--nats-url", help="default: NATS_URL, or the running engine's")
    tail_cmd.set_defaults(func=cmd_events_tail)

    report = sub.add_parser("report", parents=[common],
                            help="execution analytics: an HTML report with plots (slippage, fill "
                                 "latency, PnL) and a text summary")
    report.add_argument("--since", help="10m, 2h, all (default), or an ISO-8601 time")
    report.add_argument("--symbol", help="only this symbol")
    report.add_argument("--out", default="./report",
                        help="directory for report.html and its PNGs (default ./report)")
    report.add_argument("--json", action="store_true", help="print the summary as JSON")
    report.set_defaults(func=cmd_report)

    chaos = sub.add_parser("chaos", help="kill actors under load and check every invariant")
    chaos.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    chaos.add_argument("--rate", type=float, default=20.0, help="FastPath signals per second (default 20)")
    chaos.add_argument("--kill-every", type=float, default=1000.0, help="ms between kills (default 1000)")
    chaos.add_argument("--roles", help="comma-separated roles to kill (default: all, and nats-server)")
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--profile", choices=("packed", "isolated"), default="packed",
                       help="placement of the engine it starts (default packed)")
    chaos.add_argument("--json", action="store_true")
    chaos.set_defaults(func=cmd_chaos)

    send = sub.add_parser("send", parents=[common], help="send one FastPath request and print the reply")
    send.add_argument("kind", choices=["prepare", "confirm", "abort", "cancel", "ping"])
    send.add_argument("--signal-id")
    send.add_argument("--symbol")
    send.add_argument("--side", choices=["buy", "sell"])
    send.add_argument("--quantity", type=float)
    send.add_argument("--order-type", default="market", choices=["market", "limit"])
    send.add_argument("--price", type=float)
    send.add_argument("--time-in-force", choices=["GTC", "IOC", "FOK", "PO"])
    send.add_argument("--reduce-only", action="store_true")
    send.add_argument("--exchange")
    send.add_argument("--stop-loss", type=float)
    send.add_argument("--take-profit", type=float, action="append", help="repeat for several")
    send.add_argument("--strategy-id")
    send.add_argument("--phase", type=int)
    send.add_argument("--ttl-ms", type=int)
    send.add_argument("--timeout", type=float, default=5.0)
    send.add_argument("--follow", type=float, default=0.0,
                      help="then print EXECUTION pushes for this many seconds")
    send.set_defaults(func=cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "kind", None) in ("prepare", "confirm", "abort", "cancel") and not args.signal_id:
        parser.error(f"send {args.kind}: --signal-id is required")
    if getattr(args, "kind", None) == "prepare":
        missing = [f"--{n}" for n in ("symbol", "side", "quantity") if getattr(args, n) is None]
        if missing:
            parser.error(f"send prepare: {', '.join(missing)} required")
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except _Refused as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
