"""A local fake of the Bybit v5 REST API: the subset ccxt uses for linear
USDT perpetuals and spot, served over real HTTP.

Private calls are authenticated as Bybit does: `X-BAPI-SIGN` = hex
HMAC-SHA256(secret, timestamp + api_key + recv_window + (query string for
GET | body for POST)); a wrong one answers retCode 10004. A repeated
`orderLinkId` is refused with retCode 110072, a rate limit is retCode 10006.
The account and the faults are `FakeExchange`'s.

The private stream (`ws_url` + /v5/private) authenticates as Bybit's:
`{"op": "auth", "args": [api_key, expires, hex HMAC-SHA256(secret,
"GET/realtime" + expires)]}`, then pushes the topics subscribed ("order",
"execution") with the REST payloads plus their `category`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.support.fake_exchange import INSTRUMENTS, Duplicate, FakeExchange, FakeOrder, FakeTrade, Reply
from tests.support.fake_stream import StreamConnection

__all__ = ["FakeBybit"]

_STATUS = {
    "new": "New",
    "partially_filled": "PartiallyFilled",
    "filled": "Filled",
    "canceled": "Cancelled",
    "rejected": "Rejected",
}
_TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "PostOnly": "PO"}


def _ok(result: Any) -> Reply:
    return _answer(0, "OK", result)


def _answer(code: int, message: str, result: Any = None) -> Reply:
    return Reply(
        200,
        {
            "retCode": code,
            "retMsg": message,
            "result": result if result is not None else {},
            "retExtInfo": {},
            "time": int(time.time() * 1000),
        },
    )


class FakeBybit(FakeExchange):
    fault_paths = ("/v5/order/create", "/v5/order/cancel", "/v5/order/realtime", "/v5/order/history")
    has_stream = True
    #: Disconnection protection: seconds without a private stream before every order is canceled.
    dcp_window_s = 0
    dcp_product = ""

    # --- the private stream: /v5/private, topics "order" and "execution" ---------------------

    def ws_receive(self, conn: StreamConnection, message: Any) -> list[Any]:
        op = message.get("op")
        answer = {
            "success": True,
            "ret_msg": "",
            "conn_id": conn.id,
            "req_id": message.get("req_id"),
            "op": op,
        }
        if op == "ping":
            return [{**answer, "ret_msg": "pong"}]
        if op == "auth":
            key, expires, sign = [*(message.get("args") or []), "", "", ""][:3]
            expected = hmac.new(self.secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
            good = (
                key == self.api_key
                and str(expires).isdigit()
                and int(expires) > time.time() * 1000
                and hmac.compare_digest(expected.hexdigest(), str(sign))
            )
            self.ws_signed(good)
            conn.state["authed"] = good
            if good:  # a private stream is back: disconnection protection stands down
                self.arm_countdown("*", 0)
            return [answer if good else {**answer, "success": False, "ret_msg": "error:USVC1111"}]
        if op == "subscribe":
            if not conn.state.get("authed"):
                return [{**answer, "success": False, "ret_msg": "Request not authorized"}]
            conn.state.setdefault("topics", set()).update(message.get("args") or [])
            return [answer]
        return [{**answer, "success": False, "ret_msg": "error:invalid op"}]

    def ws_following(self, conn: StreamConnection) -> bool:
        return conn.state.get("topics", set()) >= {"order", "execution"}

    def ws_closed(self, conn: StreamConnection) -> None:
        """Disconnection protection (DCP): once set, every order is canceled
        when no authenticated private stream is left for `timeWindow`."""
        assert self.stream is not None
        if self.dcp_window_s and conn.state.get("authed") and not any(
                c.state.get("authed") for c in self.stream.connections):
            self.arm_countdown("*", self.dcp_window_s)

    def ws_events(self, conn: StreamConnection, kind: str, item: Any) -> list[Any]:
        topic = {"trade": "execution", "order": "order"}[kind]
        if topic not in conn.state.get("topics", ()):
            return []
        order = item.order if kind == "trade" else item
        data = self._trade(item) if kind == "trade" else self._order(item)
        now = int(time.time() * 1000)
        return [
            {
                "id": f"{topic}-{now}",
                "topic": topic,
                "creationTime": now,
                "data": [{**data, "category": order.market or "linear"}],
            }
        ]

    def authenticate(self, method: str, path: str, query: str, body: str, headers: Any) -> bool | None:
        if "X-BAPI-SIGN" not in headers:
            return None
        key, ts = headers.get("X-BAPI-API-KEY"), headers.get("X-BAPI-TIMESTAMP")
        window, sign = headers.get("X-BAPI-RECV-WINDOW", ""), headers.get("X-BAPI-SIGN", "")
        payload = body if method == "POST" else query
        if key != self.api_key or not ts:
            return False
        expected = hmac.new(self.secret.encode(), f"{ts}{key}{window}{payload}".encode(), hashlib.sha256)
        return hmac.compare_digest(expected.hexdigest(), sign)

    def bad_signature(self) -> Reply:
        return _answer(10004, "error sign! origin_string[...]")

    def rate_limited(self) -> Reply:
        return _answer(10006, "Too many visits!")

    # --- payloads ---------------------------------------------------------------------------

    @staticmethod
    def _order(o: FakeOrder) -> dict[str, Any]:
        return {
            "orderId": o.order_id,
            "orderLinkId": o.client_id,
            "symbol": o.symbol,
            "side": o.side.title(),
            "orderType": o.kind.title(),
            "price": str(o.price or 0),
            "qty": str(o.qty),
            "timeInForce": {"PO": "PostOnly"}.get(o.tif, o.tif),
            "reduceOnly": o.reduce_only,
            "orderStatus": _STATUS[o.status],
            "cumExecQty": str(o.filled),
            "avgPrice": str(o.avg),
            "cumExecValue": str(o.value),
            "cumExecFee": str(o.fee),
            "leavesQty": str(o.remaining),
            "triggerPrice": str(o.trigger or ""),
            "createdTime": str(o.created),
            "updatedTime": str(o.updated),
        }

    @staticmethod
    def _trade(t: FakeTrade) -> dict[str, Any]:
        o = t.order
        return {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderLinkId": o.client_id,
            "side": o.side.title(),
            "execPrice": str(t.price),
            "execQty": "" if t.qty is None else str(t.qty),
            "execFee": str(t.fee),
            "execId": t.trade_id,
            "execTime": str(t.ts),
            "orderType": o.kind.title(),
            "isMaker": t.maker,
            "feeRate": "0.00055",
            "execValue": "" if t.qty is None else str(t.qty * t.price),
            "closedSize": "0",
            "orderPrice": str(o.price),
            "orderQty": "" if t.qty is None else str(o.qty),  # ccxt falls back to it for the amount
            "leavesQty": str(o.remaining),
            "execType": "Trade",
            "feeCurrency": "USDT",
        }

    def _create(self, body: dict[str, Any]) -> Reply:
        symbol = body["symbol"]
        if symbol not in INSTRUMENTS:
            return _answer(10001, f"params error: symbol invalid {symbol}")
        try:
            order = self.place(
                client_id=body.get("orderLinkId", ""),
                symbol=symbol,
                side=body["side"].lower(),
                kind=body["orderType"].lower(),
                qty=float(body["qty"]),
                price=float(body.get("price") or 0),
                tif=_TIF[body.get("timeInForce", "GTC")],
                reduce_only=bool(body.get("reduceOnly")),
                trigger=float(body.get("triggerPrice") or 0),
                market=body.get("category", "linear"),
            )
            if body.get("triggerDirection"):  # 1: fires as the price rises to the trigger, 2: as it falls
                order.rising = int(body["triggerDirection"]) == 1
        except Duplicate:
            return _answer(110072, "OrderLinkedID is duplicate")
        return _ok({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _amend(self, body: dict[str, Any]) -> Reply:
        """Bybit's amend: a new total quantity (not below what filled) or trigger price."""
        order = self.find(client_id=body.get("orderLinkId", ""), order_id=body.get("orderId", ""))
        if order is None or order.status not in ("new", "partially_filled"):
            return _answer(110001, "order not exists or too late to replace")
        if body.get("qty"):
            if float(body["qty"]) < order.filled:
                return _answer(110009, "qty below the filled quantity")
            order.qty = float(body["qty"])
        if body.get("triggerPrice"):
            order.trigger = float(body["triggerPrice"])
        self._publish("order", order)
        return _ok({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _cancel(self, body: dict[str, Any]) -> Reply:
        order = self.cancel(client_id=body.get("orderLinkId", ""), order_id=body.get("orderId", ""))
        if order is None:
            return _answer(110001, "order not exists or too late to cancel")
        return _ok({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _orders(self, query: dict[str, str], open_only: bool) -> Reply:
        found = [
            o
            for o in self.orders.values()
            if (not query.get("symbol") or o.symbol == query["symbol"])
            and (not query.get("orderLinkId") or o.client_id == query["orderLinkId"])
            and (not query.get("orderId") or o.order_id == query["orderId"])
            and (not open_only or o.status in ("new", "partially_filled"))
        ]
        return _ok(
            {"category": query.get("category"), "list": [self._order(o) for o in found], "nextPageCursor": ""}
        )

    def _positions(self, query: dict[str, str]) -> Reply:
        rows = []
        for symbol, info in INSTRUMENTS.items():
            if query.get("symbol") and query["symbol"] != symbol:
                continue
            net = self.position(symbol)
            rows.append(
                {
                    "symbol": symbol,
                    "side": "Buy" if net > 0 else ("Sell" if net < 0 else ""),
                    "size": str(abs(net)),
                    "avgPrice": str(info["price"] if net else 0),
                    "positionValue": str(abs(net) * info["price"]),
                    "markPrice": str(info["price"]),
                    "leverage": "10",
                    "positionIdx": 0,
                    "unrealisedPnl": "0",
                    "cumRealisedPnl": "0",
                    "createdTime": "1",
                    "updatedTime": "1",
                    "tradeMode": 0,
                    "positionStatus": "Normal",
                }
            )
        return _ok({"category": "linear", "list": rows})

    def _instruments(self, category: str) -> Reply:
        if category == "spot":
            rows = [
                {
                    "symbol": s,
                    "baseCoin": i["base"],
                    "quoteCoin": "USDT",
                    "status": "Trading",
                    "innovation": "0",
                    "lotSizeFilter": {
                        "basePrecision": i["step"],
                        "quotePrecision": "0.01",
                        "minOrderQty": i["min_qty"],
                        "maxOrderQty": "100",
                        "minOrderAmt": "5",
                        "maxOrderAmt": "1000000",
                    },
                    "priceFilter": {"tickSize": i["tick"]},
                }
                for s, i in INSTRUMENTS.items()
            ]
        elif category == "linear":
            rows = [
                {
                    "symbol": s,
                    "contractType": "LinearPerpetual",
                    "status": "Trading",
                    "baseCoin": i["base"],
                    "quoteCoin": "USDT",
                    "settleCoin": "USDT",
                    "launchTime": "1",
                    "deliveryTime": "0",
                    "priceScale": "2",
                    "leverageFilter": {"minLeverage": "1", "maxLeverage": "100", "leverageStep": "0.01"},
                    "priceFilter": {"minPrice": "0.1", "maxPrice": "1999999", "tickSize": i["tick"]},
                    "lotSizeFilter": {
                        "maxOrderQty": "100",
                        "minOrderQty": i["min_qty"],
                        "qtyStep": i["step"],
                        "minNotionalValue": "5",
                    },
                    "fundingInterval": 480,
                }
                for s, i in INSTRUMENTS.items()
            ]
        else:
            rows = []
        return _ok({"category": category, "list": rows, "nextPageCursor": ""})

    def _wallet(self) -> Reply:
        coins = [
            {
                "coin": coin,
                "walletBalance": str(self.balance(coin)),
                "equity": str(self.balance(coin)),
                "availableToWithdraw": str(self.balance(coin)),
                "locked": "0",
                "totalPositionIM": "0",
                "totalOrderIM": "0",
                "usdValue": "0",
            }
            for coin in ("USDT", "BTC", "ETH")
        ]
        return _ok({"list": [{"accountType": "UNIFIED", "coin": coins}]})

    def route(self, method: str, path: str, query: dict[str, str], body: str) -> Reply:
        data = json.loads(body) if body else {}
        if path == "/v5/market/instruments-info":
            return self._instruments(query.get("category", ""))
        if path == "/v5/market/time":
            now = time.time()
            return _ok({"timeSecond": str(int(now)), "timeNano": str(int(now * 1e9))})
        if path == "/v5/order/create":
            return self._create(data)
        if path == "/v5/order/disconnected-cancel-all":
            window = data.get("timeWindow")
            if not isinstance(window, int) or not 3 <= window <= 300 or data.get("product") not in (
                    "OPTIONS", "DERIVATIVES", "SPOT"):
                return _answer(10001, "timeWindow must be 3..300 s; product OPTIONS, DERIVATIVES or SPOT")
            self.dcp_window_s, self.dcp_product = window, data["product"]
            return _ok({})
        if path == "/v5/order/amend":
            return self._amend(data)
        if path == "/v5/order/cancel":
            return self._cancel(data)
        if path == "/v5/order/realtime":
            by_id = query.get("orderLinkId") or query.get("orderId")
            return self._orders(query, open_only=query.get("openOnly", "0") == "0" and not by_id)
        if path == "/v5/order/history":
            return self._orders(query, open_only=False)
        if path == "/v5/position/list":
            return self._positions(query)
        if path == "/v5/execution/list":
            trades, after = self.page(
                self.my_trades(
                    query.get("symbol", ""),
                    int(query.get("startTime") or 0),
                    int(query["endTime"]) if query.get("endTime") else None,
                    newest_first=True,
                ),
                int(query.get("cursor") or 0),
                min(100, int(query.get("limit") or 50)),
            )
            page = {"category": query.get("category"), "list": [self._trade(t) for t in trades]}
            return _ok({**page, "nextPageCursor": "" if after is None else str(after)})
        if path == "/v5/account/wallet-balance":
            return self._wallet()
        if path in ("/v5/account/info", "/v5/user/query-api"):
            return _ok({"unifiedMarginStatus": 6, "marginMode": "REGULAR_MARGIN"})
        return _answer(10001, f"unknown endpoint {path}")
