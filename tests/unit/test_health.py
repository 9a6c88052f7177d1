"""The health verdict that `titan status` and `/health` share."""

from __future__ import annotations

from titan_actors.domain.health import health

EXPECTED = {"root", "nats", "risk", "venues", "positions", "gateway", "venue:paper", "position:BTCUSDT"}


def _tree(**details: dict) -> list[dict]:
    base = {
        "root": {}, "venues": {}, "positions": {},
        "nats": {"connected": True}, "risk": {"rebuilding": False, "states": {}},
        "gateway": {"serving": True}, "venue:paper": {"down": False},
        "position:BTCUSDT": {"reconciled": {"paper": {"result": "ok"}}},
    }
    base.update(details)
    return [{"role": r, "state": "running", "detail": d} for r, d in base.items()]


def test_an_engine_with_every_part_up_and_reconciled_is_ready() -> None:
    verdict = health(_tree(), [], EXPECTED)
    assert verdict.ready and all(c["ok"] for c in verdict.components.values())


def test_each_failing_part_is_named_with_its_reason() -> None:
    cases = {
        "nats": _tree(nats={"connected": False, "last_error": "connection refused"}),
        "gateway": _tree(gateway={"serving": False}),
        "venue:paper": _tree(**{"venue:paper": {"down": True}}),
        "reconciled": _tree(**{"position:BTCUSDT": {"reconciled": {"paper": None}}}),
        "risk": _tree(risk={"rebuilding": True}),
    }
    for part, actors in cases.items():
        verdict = health(actors, [], EXPECTED)
        failing = {name for name, c in verdict.components.items() if not c["ok"]}
        assert (verdict.ready, failing) == (False, {part}), part
        assert verdict.components[part]["reason"]
    degraded = _tree(**{"venue:bybit": {"connection": "degraded"}})
    reason = health(degraded, [], EXPECTED).components["venue:bybit"]["reason"]
    assert reason == "exchange connection: degraded"


def test_an_actor_that_does_not_answer_or_is_missing_makes_it_not_ready_but_a_halt_does_not() -> None:
    actors = [a for a in _tree() if a["role"] != "risk"]
    verdict = health(actors, ["risk"], EXPECTED)
    assert not verdict.ready and "risk" in verdict.components["actors"]["reason"]
    halted = health(_tree(risk={"rebuilding": False, "states": {"global": "HALTED"}}), [], EXPECTED)
    assert halted.ready and halted.components["risk"]["trading"] == {"global": "HALTED"}
