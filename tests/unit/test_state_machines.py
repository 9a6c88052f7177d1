"""The domain's decisions as state machines, driven by hypothesis: any
sequence of commands, venue updates, fills and clock ticks keeps the
invariants of an order, a position and the pacer (issue 16, item 7)."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from titan_actors.domain.money import ZERO
from titan_actors.domain.orders import (
    COMMAND_TABLE,
    COMMANDS,
    FINAL_STATUSES,
    STATUS_TRANSITIONS,
    Fill,
    Order,
    apply_fill,
    decide,
    order_from_intent,
    with_status,
)
from titan_actors.domain.positions import Position, unrealised_pnl
from titan_actors.domain.positions import apply_fill as position_fill
from titan_actors.domain.signals import OrderIntent
from titan_actors.venues.pacing import PRIORITY, Pacer, Request

CODES = {"UNKNOWN_SIGNAL", "ALREADY_FINAL", "EXPIRED"}
STATUSES = sorted(STATUS_TRANSITIONS)
quantities = st.decimals(D("0.001"), D(2), places=3)
prices = st.decimals(D(1), D(1000), places=2)


def test_the_command_table_covers_every_state_and_command() -> None:
    states = {s for s, _c in COMMAND_TABLE}
    assert {(s, c) for s in states for c in COMMANDS} == set(COMMAND_TABLE)
    assert {a.split(" ", 1)[1] for a in COMMAND_TABLE.values() if a.startswith("refuse ")} <= CODES


class OrderMachine(RuleBasedStateMachine):
    """One signal's order through PREPARE, commands, venue statuses and fills."""

    @initialize(qty=quantities, ttl=st.integers(1, 100))
    def prepare(self, qty: D, ttl: int) -> None:
        intent = OrderIntent("s", "BTCUSDT", "buy", qty, "limit", D(100), "GTC", False, "paper", None, (),
                             None, None, ttl)
        self.now = 0
        self.order: Order = order_from_intent(intent, "c", self.now)
        self.fills: dict[str, D] = {}
        self.stages = [self.order.stage]
        self.final_status = ""

    def _journal(self, order: Order | None) -> None:
        if order is not None:
            self.order = order
            if self.stages[-1] != order.stage:
                self.stages.append(order.stage)

    @rule(ms=st.integers(0, 60))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @rule(command=st.sampled_from(COMMANDS))
    def command(self, command: str) -> None:
        before = self.order
        decision = decide(before, command, self.now)
        assert (decision.refused is None) or decision.refused.code in CODES
        assert not (decision.send and decision.refused)
        if command == "CONFIRM" and decision.send:
            assert before.stage == "PREPARED" and self.now <= before.expires_at
            assert decision.order is not None and decision.order.status == "SUBMITTED"
        if command == "CANCEL" and decision.send:
            assert before.stage == "CONFIRMED" and not before.final
        self._journal(decision.order)

    @precondition(lambda self: self.order.stage == "CONFIRMED")
    @rule(status=st.sampled_from(STATUSES))
    def venue_says(self, status: str) -> None:
        before = self.order
        after = with_status(before, status, self.now + 1)
        if before.status in FINAL_STATUSES:
            assert after.status == before.status, "a final status is terminal"
        assert after.status == before.status or after.status in STATUS_TRANSITIONS[before.status]
        self._journal(after)

    @precondition(lambda self: self.order.stage == "CONFIRMED")
    @rule(trade=st.integers(0, 8), qty=st.decimals(D("-0.001"), D(1), places=3), price=prices)
    def venue_fills(self, trade: int, qty: D, price: D) -> None:
        fill = Fill(f"t{trade}", qty, price, ZERO, "maker", self.now)
        after = apply_fill(self.order, fill)
        if qty > 0 and f"t{trade}" not in self.fills:
            self.fills[f"t{trade}"] = qty
            assert after is not self.order
        else:
            assert after is self.order, "a repeated trade id or a non-positive quantity changes nothing"
        self._journal(after)

    @invariant()
    def filled_is_the_exact_sum_of_distinct_fills(self) -> None:
        assert self.order.filled_qty == sum(self.fills.values(), ZERO)
        assert self.order.remaining == max(self.order.quantity - self.order.filled_qty, ZERO)

    @invariant()
    def stages_only_move_forward(self) -> None:
        assert self.stages in (["PREPARED"], ["PREPARED", "CONFIRMED"], ["PREPARED", "ABORTED"],
                               ["PREPARED", "EXPIRED"])

    @invariant()
    def a_final_status_stays(self) -> None:
        if self.final_status:
            assert self.order.status == self.final_status
        elif self.order.status in FINAL_STATUSES:
            self.final_status = self.order.status

    @invariant()
    def filled_in_full_means_filled_unless_closed_before(self) -> None:
        if self.order.stage == "CONFIRMED" and self.order.filled_qty >= self.order.quantity:
            assert self.order.status in FINAL_STATUSES


class PositionMachine(RuleBasedStateMachine):
    """Fills of either side in any order against one position."""

    def __init__(self) -> None:
        super().__init__()
        self.position = Position()
        self.net = ZERO
        self.cash = ZERO
        self.fees = ZERO
        self.closed = ZERO
        self.ts = 0

    @rule(side=st.sampled_from(["buy", "sell"]), qty=quantities, price=prices,
          fee=st.decimals(D(0), D(1), places=4))
    def fill(self, side: str, qty: D, price: D, fee: D) -> None:
        self.ts += 1
        self.position, closed = position_fill(self.position, side, qty, price, fee, self.ts)
        self.net += qty if side == "buy" else -qty
        self.cash += -qty * price if side == "buy" else qty * price
        self.fees += fee
        if closed is not None:
            self.closed += closed.realised_pnl
            assert closed.size > 0 and closed.side in ("long", "short")

    @invariant()
    def quantity_and_fees_are_exact_sums(self) -> None:
        assert self.position.qty == self.net
        assert self.position.fees == self.fees
        assert self.position.flat == (self.net == 0)
        if self.position.flat:
            assert self.position.avg_entry == 0

    @invariant()
    def pnl_is_the_cash_flow_marked_to_market(self) -> None:
        mark = D("123.45")
        total = self.position.realised_pnl + unrealised_pnl(self.position, mark)
        assert abs(total - (self.cash + self.net * mark)) < D("1e-15")


class PacerMachine(RuleBasedStateMachine):
    """Requests of every kind put, started and finished over time."""

    PUBLISHED = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pacer = Pacer(rate=8.0, published=self.PUBLISHED, max_wait_s=1.0, now=self.now)
        self.starts: list[float] = []
        self.running: set[str] = set()
        self.put_order: dict[str, list[int]] = {}
        self.start_order: dict[str, list[int]] = {}
        self.n = 0

    @rule(kind=st.sampled_from(sorted(PRIORITY)), key=st.sampled_from(["a", "b", "c", "d"]),
          delay=st.sampled_from([0.0, 0.0, 0.3]))
    def put(self, kind: str, key: str, delay: float) -> None:
        self.n += 1
        self.pacer.put(Request(kind, key, lambda: None, tags={"n": self.n}), self.now, delay=delay)
        self.put_order.setdefault(key, []).append(self.n)

    @rule(dt=st.sampled_from([0.0, 0.01, 0.05, 0.2, 1.0]))
    def start_due(self, dt: float) -> None:
        self.now += dt
        for request in self.pacer.due(self.now):
            assert request.key not in self.running, "one request per key at a time"
            self.running.add(request.key)
            self.starts.append(self.now)
            self.start_order.setdefault(request.key, []).append(request.tags["n"])

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(key)
        self.pacer.done(key)

    @invariant()
    def never_more_than_the_published_limit_in_a_second(self) -> None:
        for i, t in enumerate(self.starts):
            in_window = sum(1 for u in self.starts[i:] if u < t + 1.0)
            assert in_window <= self.PUBLISHED - 1

    @invariant()
    def requests_of_one_key_start_in_the_order_they_were_put(self) -> None:
        for key, started in self.start_order.items():
            assert started == self.put_order[key][: len(started)]


TestOrderMachine = OrderMachine.TestCase
TestPositionMachine = PositionMachine.TestCase
TestPacerMachine = PacerMachine.TestCase
for machine in (TestOrderMachine, TestPositionMachine, TestPacerMachine):
    machine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
