"""Every message that actors exchange, as frozen slotted dataclasses.

Commands are imperative (`StartChild`, `StopTree`), events past tense
(`ChildStarted`, `PeerDown`). All of them pickle, so the same object travels
over thespian or over a FastLane and is handled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from titan_actors.domain.reconciliation import FillInFlight

__all__ = [
    "AbortOrder",
    "AlgoDone",
    "AlgoProgress",
    "AlgoStatus",
    "AlgoStatusRequest",
    "CancelByNats",
    "CancelExits",
    "CancelOpenOrders",
    "CancelOrder",
    "CheckOrder",
    "ChildSpec",
    "ChildStarted",
    "CommandRefused",
    "CommandReply",
    "Deliver",
    "Delivered",
    "Directory",
    "EngineInfo",
    "EvaluateOrder",
    "Evaluation",
    "EventsStored",
    "ExecutionReport",
    "FlattenPositions",
    "GetDirectory",
    "Heartbeat",
    "HeartbeatArmed",
    "Init",
    "InjectFault",
    "LaneFlood",
    "LaneFloodDone",
    "LedgerEvents",
    "LedgerQuery",
    "OpenOrdersCanceled",
    "OrderAborted",
    "OrderAccepted",
    "OrderCanceled",
    "OrderDropped",
    "OrderPrepared",
    "PaperAdjust",
    "PaperPlace",
    "Peer",
    "Ping",
    "PlaceOrder",
    "PolicyReplaced",
    "Pong",
    "PositionHeld",
    "PositionQuery",
    "PositionSnapshot",
    "PositionsFlattened",
    "PriceUpdate",
    "PriceUpdates",
    "PublishEvents",
    "ReconcileNow",
    "Relay",
    "RelayResult",
    "ReplacePolicy",
    "ReservationCheck",
    "SetTradingState",
    "SetVenueOutage",
    "SnapshotRequest",
    "StageOrder",
    "StartChild",
    "StartChildResult",
    "StatesApplied",
    "StatusReply",
    "StatusRequest",
    "StopTree",
    "SubmitOrder",
    "TradingStateSet",
    "TradingStates",
    "TreeStatus",
    "TreeStatusRequest",
    "TreeStopped",
    "VenueHealth",
    "VenueOrders",
    "VenueOrdersRequest",
    "VenueState",
    "VenueStateRequest",
    "WebhookRequest",
]


# --- identity and configuration -------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What every actor of one engine instance shares."""

    engine_id: str
    data_dir: str
    host: str
    log_level: str = "INFO"
    fsync: bool = True
    retention_ms: int = 7 * 86_400_000  # final orders, replies, fill keys


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """An OTP child spec: who to start, how to restart it, what to give it.

    `actor` is the dotted path of the actor class (thespian needs an importable
    module). `restart` is `permanent`, `transient` or `temporary`. `config` is
    handed to the child in its `Init`.
    """

    id: str
    actor: str
    restart: str = "permanent"
    config: dict[str, Any] = field(default_factory=dict)
    shutdown_ms: int = 5000
    kind: str = "worker"


@dataclass(frozen=True, slots=True)
class Init:
    """First message to every actor: what it is, and what it was given."""

    role: str
    engine: EngineInfo
    config: dict[str, Any]
    restarts: int = 0
    directory: Directory | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    """Where one role lives now: its worker's thespian address, process and
    FastLane name, the worker's name, and `cell`, which names this
    incarnation of the actor (a restart in the same process gets a new one)."""

    role: str
    address: Any
    pid: int
    lane: str | None
    host: str
    pgid: int = 0
    worker: str = ""
    cell: int = 0


@dataclass(frozen=True, slots=True)
class Directory:
    """The whole role → peer map, pushed to every actor after each change."""

    version: int
    peers: tuple[Peer, ...]

    def get(self, role: str) -> Peer | None:
        for peer in self.peers:
            if peer.role == role:
                return peer
        return None


# --- supervision ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """A child finished its `Init`: it is up and reachable at `peer`."""

    peer: Peer
    started_at: float


@dataclass(frozen=True, slots=True)
class StartChild:
    """Add a child to a running supervisor (OTP `start_child`); idempotent by id."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class StartChildResult:
    id: str
    ok: bool
    already: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StopTree:
    """Stop every child in reverse start order, then answer `TreeStopped`."""

    reason: str = "shutdown"


@dataclass(frozen=True, slots=True)
class TreeStopped:
    role: str
    stopped: tuple[str, ...]


# --- status ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRequest:
    req_id: str = ""


@dataclass(frozen=True, slots=True)
class StatusReply:
    role: str
    pid: int
    started_at: float
    restarts: int
    state: str
    detail: dict[str, Any]
    req_id: str = ""
    worker: str = ""


@dataclass(frozen=True, slots=True)
class TreeStatusRequest:
    """Ask the root for the status of every actor in the directory."""

    timeout_s: float = 1.0
    req_id: str = ""


@dataclass(frozen=True, slots=True)
class TreeStatus:
    """The root's answer: one `StatusReply` per role that answered in time, and
    the roles that did not (`missing`)."""

    state: str
    directory_version: int
    actors: tuple[StatusReply, ...]
    missing: tuple[str, ...]
    gave_up: bool = False
    req_id: str = ""


# --- diagnostics over the directory ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Relay:
    """Ask an actor to ping `target` through the directory over `via`
    (`lane` or `thespian`) and report what answered."""

    req_id: str
    target: str
    via: str = "lane"
    timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Ping:
    req_id: str
    via: str = "lane"
    answer: bool = True


@dataclass(frozen=True, slots=True)
class Pong:
    """`via` is the transport asked for; `arrived_by` the one the Ping really
    came by (a lane that cannot be opened falls back to thespian)."""

    req_id: str
    role: str
    pid: int
    via: str
    arrived_by: str = ""


@dataclass(frozen=True, slots=True)
class RelayResult:
    req_id: str
    ok: bool
    target: str
    pid: int = 0
    via: str = ""
    reason: str = ""
    arrived_by: str = ""


@dataclass(frozen=True, slots=True)
class GetDirectory:
    """Ask any actor for the `Directory` it holds now."""


@dataclass(frozen=True, slots=True)
class InjectFault:
    """Chaos hook. Without `at`: raise inside the handler, so that let-it-crash
    is exercised through the real path (log, exit, supervisor restart). With
    `at`: arm the named crash point; the next time the actor passes there
    (e.g. `adapter.after_journal`) its worker SIGKILLs itself (`kill="worker"`)
    or the actor alone is killed (`kill="actor"`), to reproduce a kill at an
    exact moment. `at="pause"` / `"resume"`: hold every message until resumed."""

    reason: str = "injected"
    at: str = ""
    kill: str = "worker"


@dataclass(frozen=True, slots=True)
class LaneFlood:
    """Benchmark: send `count` pings to `target` over `via`, and `rtt` round trips."""

    target: str
    via: str
    count: int
    rtt: int


@dataclass(frozen=True, slots=True)
class LaneFloodDone:
    via: str
    count: int
    seconds: float
    rtt_us: tuple[float, ...]


# --- the order flow (hot path, over FastLanes) ----------------------------------
# Commands carry the signal id; every outcome names the FastPath request type it
# answers (`command`), so the gateway can match it and persist it.


@dataclass(frozen=True, slots=True)
class CheckOrder:
    """Gateway → risk guard: may this PREPARE go ahead?"""

    intent: Any  # domain.signals.OrderIntent
    reply_to: str
    trace: str = ""  # the W3C traceparent of the request's span (runtime.otel)


@dataclass(frozen=True, slots=True)
class StageOrder:
    """Risk guard → venue adapter: approved; stage it with its client order id."""

    intent: Any
    reply_to: str


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """CONFIRM: journal the staged order and send it to the venue."""

    signal_id: str
    reply_to: str
    trace: str = ""


@dataclass(frozen=True, slots=True)
class AbortOrder:
    """ABORT: drop a staged, unconfirmed order."""

    signal_id: str
    reply_to: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """CANCEL: cancel the live order of a confirmed signal at the venue."""

    signal_id: str
    reply_to: str


@dataclass(frozen=True, slots=True)
class OrderPrepared:
    signal_id: str
    order: dict[str, Any]
    expires_at: int
    command: str = "PREPARE"


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    signal_id: str
    client_order_id: str
    exchange: str
    command: str = "CONFIRM"


@dataclass(frozen=True, slots=True)
class OrderAborted:
    signal_id: str
    command: str = "ABORT"


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    signal_id: str
    client_order_id: str
    command: str = "CANCEL"


@dataclass(frozen=True, slots=True)
class CommandRefused:
    """A command was refused: `code` is a FastPath REJECTED code; `rule`
    names the risk rule for RISK_REJECTED."""

    signal_id: str
    command: str
    code: str
    reason: str
    rule: str = ""


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """An order changed at its venue (pushed as EXECUTION, applied by the
    position actor). `last_fill` is the fill that caused it, if any."""

    signal_id: str
    client_order_id: str
    order_id: str
    symbol: str
    side: str
    exchange: str
    status: str
    filled_qty: Decimal
    avg_price: Decimal
    last_fill: dict[str, Any] | None
    leg: str = "entry"
    strategy_id: str | None = None
    phase: int | None = None
    ts: int = 0
    quantity: Decimal = Decimal(0)
    price: Decimal | None = None
    trace: str = ""  # the traceparent of the span that sent the order (runtime.otel)


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    """The latest quote of a symbol (market data)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    ts: int
    volume: Decimal | None = None  # the ticker's cumulative traded volume, when it sends one


# --- events and the NATS bridge ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishEvents:
    """Producer → bridge: store these events and publish them (re-sent until
    acknowledged by `EventsStored`)."""

    source: str
    events: tuple[Any, ...]  # wire.events.Event


@dataclass(frozen=True, slots=True)
class EventsStored:
    """Bridge → producer: these seqs of `source` are in the bridge's store."""

    source: str
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PriceUpdates:
    """The latest quote per symbol since the last batch (coalesced)."""

    quotes: tuple[PriceUpdate, ...]
    books: tuple[Any, ...] = ()  # domain.routing.Book: venues' L2 books (for smart routing)


@dataclass(frozen=True, slots=True)
class SetTradingState:
    """Operator: set the trading state of a scope (`global`, `venue:NAME`,
    `symbol:SYMBOL`); `mode` ACTIVE lifts it (resume)."""

    mode: str
    scope: str
    reason: str
    operator: str
    corr: str = ""


@dataclass(frozen=True, slots=True)
class CancelOpenOrders:
    """Operator (kill switch): cancel every resting order of the scope at this
    adapter's venue — entries and bracket exits alike — and drop the orders
    prepared but not confirmed there. `scope`: `global`, `venue:NAME` or
    `symbol:SYMBOL`."""

    scope: str
    reason: str
    operator: str
    corr: str = ""


@dataclass(frozen=True, slots=True)
class OpenOrdersCanceled:
    """Adapter → operator: the cancels it sent (`canceled`: client order ids;
    each ends as CANCELED, or FILLED if the venue filled it first, in the
    order's events) and the staged orders it dropped."""

    venue: str
    canceled: tuple[str, ...]
    dropped: tuple[str, ...]
    corr: str = ""

    def summary(self) -> dict[str, Any]:
        """What the operator is shown for this venue (CLI and NATS alike)."""
        return {"canceled": list(self.canceled), "dropped": list(self.dropped)}


@dataclass(frozen=True, slots=True)
class FlattenPositions:
    """Operator (kill switch): `CancelOpenOrders` of the scope, then close
    every position of the scope at this adapter's venue with a reduce-only
    market order (sent whatever the trading state)."""

    scope: str
    reason: str
    operator: str
    corr: str = ""


@dataclass(frozen=True, slots=True)
class PositionsFlattened:
    """Adapter → operator: what it canceled and dropped, the closing orders
    it sent (`closing[symbol]` = `{"client_order_id", "quantity"}`), or why
    it would not (`refused`)."""

    venue: str
    canceled: tuple[str, ...]
    dropped: tuple[str, ...]
    closing: dict[str, dict[str, Any]]
    refused: str = ""
    corr: str = ""

    def summary(self) -> dict[str, Any]:
        done: dict[str, Any] = {"canceled": list(self.canceled), "dropped": list(self.dropped),
                                "closing": self.closing}
        if self.refused:
            done["refused"] = self.refused
        return done


@dataclass(frozen=True, slots=True)
class TradingStateSet:
    """Risk guard → operator: the state is set, persisted, and applied by the
    gateway and every venue adapter, except the `unconfirmed` roles, which did
    not answer in time (they are told again when they restart, and send
    nothing before they know the states)."""

    corr: str
    scope: str
    trading_state: str
    states: dict[str, str]
    unconfirmed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TradingStates:
    """Risk guard → gateway (and anyone): every scope's state now, and whether
    the engine can take an order (`ready`: the risk guard's view is rebuilt and
    every position is reconciled with its venue, or that venue is known to be
    unavailable). The gateway serves its socket once it has heard `ready`."""

    states: dict[str, str]
    ready: bool = True
    version: int = 0
    #: Armed dead man's switches: scope → timeout_ms (the adapters keep the
    #: exchange's own cancel-all-after armed for what they cover).
    switches: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class StatesApplied:
    """Gateway or venue adapter → risk guard: it now acts on the `TradingStates`
    of this `version` (and every earlier one). A halt is acknowledged to the
    operator only once every live one has said so."""

    role: str
    version: int


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """NATS place command: PREPARE and CONFIRM in one step, through the gateway."""

    intent: Any
    corr: str


@dataclass(frozen=True, slots=True)
class CancelByNats:
    signal_id: str
    corr: str


@dataclass(frozen=True, slots=True)
class AlgoStatusRequest:
    """Algo actor → venue adapter: the parent order and its children now."""

    parent: str  # the parent's signal id


@dataclass(frozen=True, slots=True)
class AlgoStatus:
    """Venue adapter → algo actor: the parent's `status`, `filled_qty`, and per
    child n (that the journal has) its `stage`, `status`, `filled_qty`."""

    parent: str
    status: str
    final: bool
    filled_qty: Decimal
    children: dict[int, dict[str, Any]]
    bid: Decimal | None = None  # the symbol's last quote at the adapter (CHASE follows it)
    ask: Decimal | None = None
    volume: Decimal | None = None  # its cumulative traded volume (VWAP's participation cap)
    venue: str = ""  # the adapter answering (a SPLIT's children are at several)


@dataclass(frozen=True, slots=True)
class AlgoProgress:
    """Algo actor → the parent's adapter: what the children filled, all venues
    together (a SPLIT's children are not all in that adapter's journal)."""

    parent: str
    filled_qty: Decimal
    avg_price: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class AlgoDone:
    """Algo actor → venue adapter: the schedule is over; the parent ends with
    `status` (unless final already) and `reason`."""

    parent: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class PositionQuery:
    """Venue adapter → position actor: the engine's own quantity of its
    symbol at `venue` (a spot flatten sells that, not the wallet's coins)."""

    venue: str
    corr: str


@dataclass(frozen=True, slots=True)
class PositionHeld:
    """Position actor → asker: the answer to `PositionQuery`."""

    symbol: str
    venue: str
    qty: Decimal
    corr: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Gateway or NATS bridge → risk guard: arm or refresh the dead man's
    switch of `scope` for `timeout_ms` (0 disarms); answered `HeartbeatArmed`."""

    scope: str
    timeout_ms: int
    corr: str


@dataclass(frozen=True, slots=True)
class HeartbeatArmed:
    """Risk guard → asker: the switch is persisted; fires unless another
    heartbeat comes before `deadline` (ms; 0 when disarmed). `error` when refused."""

    corr: str
    scope: str
    timeout_ms: int
    deadline: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class LedgerEvents:
    """NATS bridge → ledger (a re-driven delivery): events it stored."""

    events: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """HTTP actor → ledger: a read endpoint's `path` and its checked query
    `params`; answered with `CommandReply`."""

    path: str
    params: dict[str, Any]
    corr: str


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """HTTP actor → gateway: a FastPath request object that came by
    `POST /webhook` (authenticated there); answered with `CommandReply`."""

    request: dict[str, Any]
    corr: str


@dataclass(frozen=True, slots=True)
class CommandReply:
    """Gateway or risk guard → bridge: the reply object of a NATS command."""

    corr: str
    reply: dict[str, Any]


# --- re-driven deliveries and the exposure view -------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """Producer → receiver: `(seq, message)` items that must arrive; the
    receiver handles each message as if it had come alone, then answers
    `Delivered` with their seqs. Re-sent until acknowledged."""

    source: str
    items: tuple[tuple[int, Any], ...]


@dataclass(frozen=True, slots=True)
class Delivered:
    source: str
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """Position actor → risk guard, after every change (state over deltas: a
    lost one is healed by the next). `venues[name]` has `qty`, `avg_entry`,
    `open_buy`, `open_sell`, `open_orders`; `accounted` lists client order
    ids this snapshot already counts (open or filled): after a change the 64
    most recent, every 2 s and when asked (`SnapshotRequest`) all of them, so
    a snapshot's size does not grow with the account's history."""

    symbol: str
    version: int
    venues: dict[str, dict[str, Any]]
    accounted: tuple[str, ...]
    realised_today: Decimal
    day: str
    reconciled: dict[str, bool] = field(default_factory=dict)
    unavailable: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Risk guard → position actor: send me your snapshot now (after a restart)."""


@dataclass(frozen=True, slots=True)
class OrderDropped:
    """Adapter → risk guard: a prepared order will never be sent (aborted or
    expired): release what was reserved for it."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class CancelExits:
    """Position actor → adapter: reconciliation adopted a flat position at the
    venue for `symbol`; the bracket exits still resting there protect nothing:
    cancel them."""

    symbol: str


@dataclass(frozen=True, slots=True)
class ReconcileNow:
    """Adapter → position actor: the venue reported something about `symbol`
    the adapter could not apply (a trade of no order it knows, a fill with no
    quantity or price): compare with the venue now, not at the next interval."""

    symbol: str
    venue: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReservationCheck:
    """Risk guard → adapter: which of these orders will never reach the venue?
    The adapter answers `OrderDropped` for each one it does not know or that
    was aborted or expired unconfirmed; the others stay reserved."""

    client_order_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VenueHealth:
    """Adapter → risk guard: consecutive venue errors (0 after a success)."""

    venue: str
    consecutive_errors: int
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class EvaluateOrder:
    """Operator: every rule's verdict for a hypothetical order; nothing is reserved."""

    intent: Any


@dataclass(frozen=True, slots=True)
class Evaluation:
    verdicts: tuple[tuple[str, bool, str], ...]
    state: str
    exposure: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplacePolicy:
    """Operator: a new risk policy (the `[risk]` table), validated before it
    replaces the old one."""

    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PolicyReplaced:
    ok: bool
    error: str = ""
    policy: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SetVenueOutage:
    """Paper venue: simulate that the venue cannot be reached (chaos, tests)."""

    down: bool


# --- reconciliation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VenueStateRequest:
    """Position actor → adapter: the venue's own figures for `symbol`."""

    symbol: str


@dataclass(frozen=True, slots=True)
class VenueState:
    """Adapter → position actor: what the venue says it holds for a symbol.
    `open_orders[client_order_id]` has `side`, `remaining`, `price`, `status`."""

    venue: str
    symbol: str
    qty: Decimal
    avg_price: Decimal | None  # None: the venue gives none (a spot wallet)
    open_orders: dict[str, dict[str, Any]]
    ts: int
    #: Our fills between the venue's figures and the position actor's (see
    #: `domain.reconciliation`), and the orders with an update on its way.
    in_flight: tuple[FillInFlight, ...] = ()
    orders_in_flight: frozenset[str] = frozenset()
    available: bool = True  # False: the adapter has no venue to ask (its exchange is not available)


@dataclass(frozen=True, slots=True)
class PaperAdjust:
    """Paper venue (tests, drills): change the venue's position behind the
    engine's back, as a manual trade at the exchange would."""

    symbol: str
    qty: Decimal
    avg_price: Decimal


@dataclass(frozen=True, slots=True)
class PaperPlace:
    """Paper venue (tests, drills): an order placed at the venue by someone
    else (the exchange UI, another client), unknown to the engine."""

    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VenueOrdersRequest:
    """Audit (chaos checks): every order the venue holds and every order the
    adapter journaled, by client order id."""


@dataclass(frozen=True, slots=True)
class VenueOrders:
    venue: dict[str, dict[str, Any]]
    journal: dict[str, dict[str, Any]]
    positions: dict[str, Decimal]
