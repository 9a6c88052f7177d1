"""A local fake of MEXC's REST API: the subset ccxt uses for spot (`/api/v3`)
and USDT swaps (`/api/v1/contract`, `/api/v1/private`), over real HTTP.

Signatures are checked as MEXC does:
- spot: `X-MEXC-APIKEY` and `signature` = hex HMAC-SHA256(secret, the query
  string before `&signature=`), for every method (wrong: code 700002);
- contract: headers `ApiKey`, `Request-Time` and `Signature` = hex
  HMAC-SHA256(secret, api key + request time + (the JSON body for POST | the
  sorted query string for GET)) (wrong: code 602).

Swap sizes are in contracts of 0.0001 BTC / 0.01 ETH (`vol`); orders are
named by `externalOid`. An unknown order is spot -2013 / swap 2040 "order not
exist"; a rate limit HTTP 429 (spot) / code 510 (swap). MEXC does not publish
its duplicate-client-id answer: here it is "Duplicate clientOrderId"
(recognised by the word; were the real one different, the adapter's look-up
by client order id still finds the order). Account and faults: `FakeExchange`.

The swap's private stream (`/edge`) logs in as MEXC's: `{"method": "login",
"param": {"apiKey", "reqTime", "signature": hex HMAC-SHA256(secret, api key
+ reqTime)}}`, then pushes `push.personal.order` and
`push.personal.order.deal` with the REST payloads.

Swap trigger orders (`planorder/place`, `planorder/list/orders`,
`planorder/cancel`) fire as the price reaches the trigger from below
(`triggerType` 1) or above (2), as a market order of the matching engine,
and are dropped unfired after their `executeCycle` (24 hours or 7 days).
The engine does not use them (a protective stop must not expire: it holds
MEXC stops itself); they are here so that the fake is the venue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from tests.support.fake_exchange import INSTRUMENTS, Duplicate, FakeExchange, FakeOrder, FakeTrade, Reply
from tests.support.fake_stream import StreamConnection

__all__ = ["FakeMexc"]

CONTRACT_SIZE = {"BTCUSDT": 0.0001, "ETHUSDT": 0.01}
_SPOT_STATUS = {
    "new": "NEW",
    "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED",
    "canceled": "CANCELED",
    "rejected": "CANCELED",
}
_SWAP_STATE = {"new": 2, "partially_filled": 2, "filled": 3, "canceled": 4, "rejected": 5}


def _swap_id(symbol: str) -> str:
    return f"{INSTRUMENTS[symbol]['base']}_USDT"


def _symbol_of(swap_id: str) -> str:
    return swap_id.replace("_", "")


def _spot_error(code: int, message: str, status: int = 400) -> Reply:
    return Reply(status, {"code": code, "msg": message})


def _swap(data: Any = None, code: int = 0, message: str = "") -> Reply:
    if code:
        return Reply(200, {"success": False, "code": code, "message": message})
    return Reply(200, {"success": True, "code": 0, "data": data})


class FakeMexc(FakeExchange):
    fault_paths = (
        "/api/v3/order",
        "/api/v1/private/order/create",
        "/api/v1/private/order/cancel_with_external",
    )
    has_stream = True  # the swap's (/edge); spot's is protobuf, which ccxt cannot read without extras

    # --- the swap's private stream: login, then every private push -----------------------------

    def ws_receive(self, conn: StreamConnection, message: Any) -> list[Any]:
        now = int(time.time() * 1000)
        method = message.get("method")
        if method == "ping":
            return [{"channel": "pong", "data": now}]
        if method != "login":
            return [{"channel": "rs.error", "data": f"unknown method {method}", "ts": now}]
        param = message.get("param") or {}
        key, at, sign = param.get("apiKey"), str(param.get("reqTime", "")), str(param.get("signature", ""))
        expected = hmac.new(self.secret.encode(), f"{key}{at}".encode(), hashlib.sha256).hexdigest()
        good = key == self.api_key and hmac.compare_digest(expected, sign)
        self.ws_signed(good)
        conn.state["authed"] = good
        if not good:
            return [{"channel": "rs.error", "data": "invalid sign"}]
        return [{"channel": "rs.login", "data": "success"}]

    def ws_following(self, conn: StreamConnection) -> bool:
        return bool(conn.state.get("authed"))

    def ws_events(self, conn: StreamConnection, kind: str, item: Any) -> list[Any]:
        order = item.order if kind == "trade" else item
        if not conn.state.get("authed") or order.market != "linear":
            return []
        now = int(time.time() * 1000)
        if kind == "trade":
            return [{"channel": "push.personal.order.deal", "data": self._swap_deal(item), "ts": now}]
        return [{"channel": "push.personal.order", "data": self._swap_order(item), "ts": now}]

    def authenticate(self, method: str, path: str, query: str, body: str, headers: Any) -> bool | None:
        if path.startswith("/api/v1/private"):
            key, ts, sign = (
                headers.get("ApiKey"),
                headers.get("Request-Time", ""),
                headers.get("Signature", ""),
            )
            payload = body if method == "POST" else query
            expected = hmac.new(
                self.secret.encode(), f"{key}{ts}{payload}".encode(), hashlib.sha256
            ).hexdigest()
            return key == self.api_key and hmac.compare_digest(expected, sign)
        if "signature=" not in query:
            return None
        payload, _, signature = query.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return headers.get("X-MEXC-APIKEY") == self.api_key and hmac.compare_digest(expected, signature)

    def bad_signature(self) -> Reply:
        return _spot_error(700002, "Signature for this request is not valid.")

    def rate_limited(self) -> Reply:
        return _spot_error(429, "Too Many Requests", 429)

    # --- spot -----------------------------------------------------------------------------------

    @staticmethod
    def _spot_order(o: FakeOrder) -> dict[str, Any]:
        kind = (
            "LIMIT_MAKER"
            if o.tif == "PO"
            else {"IOC": "IMMEDIATE_OR_CANCEL", "FOK": "FILL_OR_KILL"}.get(o.tif, o.kind.upper())
        )
        return {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_id,
            "price": str(o.price),
            "origQty": str(o.qty),
            "executedQty": str(o.filled),
            "cummulativeQuoteQty": str(o.value),
            "status": _SPOT_STATUS[o.status],
            "timeInForce": None,
            "type": kind,
            "side": o.side.upper(),
            "stopPrice": "",
            "icebergQty": "",
            "time": o.created,
            "updateTime": o.updated,
            "isWorking": True,
            "origQuoteOrderQty": "0",
        }

    @staticmethod
    def _spot_trade(t: FakeTrade) -> dict[str, Any]:
        o = t.order
        return {
            "symbol": o.symbol,
            "id": t.trade_id,
            "orderId": o.order_id,
            "orderListId": -1,
            "price": str(t.price),
            "qty": "" if t.qty is None else str(t.qty),
            "quoteQty": "" if t.qty is None else str(t.qty * t.price),
            "commission": str(t.fee),
            "commissionAsset": "USDT",
            "time": t.ts,
            "isBuyer": o.side == "buy",
            "isMaker": t.maker,
            "isBestMatch": True,
            "isSelfTrade": False,
            "clientOrderId": o.client_id,
        }

    def _spot_info(self) -> Reply:
        symbols = [
            {
                "symbol": s,
                "status": "1",
                "baseAsset": i["base"],
                "baseAssetPrecision": 3,
                "quoteAsset": "USDT",
                "quotePrecision": 2,
                "quoteAssetPrecision": 1 if s == "BTCUSDT" else 2,
                "baseCommissionPrecision": 3,
                "quoteCommissionPrecision": 2,
                "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "quoteAmountPrecision": "5",
                "baseSizePrecision": i["min_qty"],
                "permissions": ["SPOT"],
                "filters": [],
                "maxQuoteAmount": "2000000",
                "makerCommission": "0",
                "takerCommission": "0.0005",
                "fullName": i["base"],
                "tradeSideType": 1,
                "st": False,
            }
            for s, i in INSTRUMENTS.items()
        ]
        return Reply(
            200,
            {
                "timezone": "CST",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": symbols,
            },
        )

    def _spot(self, method: str, path: str, params: dict[str, str]) -> Reply:
        if path == "/api/v3/exchangeInfo":
            return self._spot_info()
        if path == "/api/v3/order" and method == "POST":
            kind = params["type"].lower()
            tif = {"limit_maker": "PO", "immediate_or_cancel": "IOC", "fill_or_kill": "FOK"}.get(kind, "GTC")
            try:
                order = self.place(
                    client_id=params.get("newClientOrderId", ""),
                    symbol=params["symbol"],
                    side=params["side"].lower(),
                    kind="market" if kind == "market" else "limit",
                    qty=float(params["quantity"]),
                    price=float(params.get("price") or 0),
                    tif=tif,
                    market="spot",
                )
            except Duplicate:
                return _spot_error(30099, "Duplicate clientOrderId")
            return Reply(
                200,
                {
                    "symbol": order.symbol,
                    "orderId": order.order_id,
                    "orderListId": -1,
                    "price": str(order.price),
                    "origQty": str(order.qty),
                    "type": params["type"],
                    "side": params["side"],
                    "transactTime": order.created,
                },
            )
        if path == "/api/v3/order":
            client_id, order_id = params.get("origClientOrderId", ""), params.get("orderId", "")
            found = (self.cancel if method == "DELETE" else self.find)(client_id=client_id, order_id=order_id)
            return (
                Reply(200, self._spot_order(found)) if found else _spot_error(-2013, "Order does not exist.")
            )
        if path == "/api/v3/openOrders":
            return Reply(200, [self._spot_order(o) for o in self.open_orders(params.get("symbol", ""))])
        if path == "/api/v3/myTrades":
            trades = self.my_trades(
                params.get("symbol", ""),
                int(params.get("startTime") or 0),
                int(params["endTime"]) if params.get("endTime") else None,
                newest_first=True,  # assumed: MEXC does not say (the adapter pages either way)
            )[: min(100, int(params.get("limit") or 100))]
            return Reply(200, [self._spot_trade(t) for t in trades])
        if path == "/api/v3/account":
            balances = [
                {"asset": c, "free": str(self.balance(c)), "locked": "0"} for c in ("USDT", "BTC", "ETH")
            ]
            return Reply(
                200,
                {
                    "canTrade": True,
                    "canWithdraw": True,
                    "canDeposit": True,
                    "updateTime": None,
                    "accountType": "SPOT",
                    "balances": balances,
                    "permissions": ["SPOT"],
                },
            )
        if path == "/api/v3/time":
            return Reply(200, {"serverTime": int(time.time() * 1000)})
        return _spot_error(-1000, f"unknown endpoint {method} {path}", 404)

    # --- swap -------------------------------------------------------------------------------------

    @staticmethod
    def _swap_order(o: FakeOrder) -> dict[str, Any]:
        size = CONTRACT_SIZE[o.symbol]
        side = {("buy", False): 1, ("sell", True): 4, ("sell", False): 3, ("buy", True): 2}[
            (o.side, o.reduce_only)
        ]
        kind = 2 if o.tif == "PO" else {"IOC": 3, "FOK": 4}.get(o.tif, 5 if o.kind == "market" else 1)
        return {
            "orderId": o.order_id,
            "symbol": _swap_id(o.symbol),
            "positionId": "0",
            "price": o.price,
            "vol": round(o.qty / size, 8),
            "leverage": 20,
            "side": side,
            "category": 1,
            "orderType": kind,
            "dealAvgPrice": o.avg,
            "dealVol": round(o.filled / size, 8),
            "orderMargin": 0,
            "takerFee": o.fee,
            "makerFee": 0,
            "profit": 0,
            "feeCurrency": "USDT",
            "openType": 2,
            "state": _SWAP_STATE[o.status],
            "externalOid": o.client_id,
            "errorCode": 0,
            "usedMargin": 0,
            "createTime": o.created,
            "updateTime": o.updated,
        }

    @staticmethod
    def _swap_deal(t: FakeTrade) -> dict[str, Any]:
        o = t.order
        side = {("buy", False): 1, ("sell", True): 4, ("sell", False): 3, ("buy", True): 2}[
            (o.side, o.reduce_only)
        ]
        return {
            "id": t.trade_id,
            "symbol": _swap_id(o.symbol),
            "side": side,
            "vol": None if t.qty is None else round(t.qty / CONTRACT_SIZE[o.symbol], 8),
            "price": t.price,
            "feeCurrency": "USDT",
            "fee": t.fee,
            "timestamp": t.ts,
            "profit": 0,
            "category": 1,
            "orderId": o.order_id,
            "taker": not t.maker,
            "positionMode": 1,
        }

    def _swap_detail(self) -> Reply:
        rows = [
            {
                "symbol": _swap_id(s),
                "displayName": f"{i['base']}_USDT PERPETUAL",
                "baseCoin": i["base"],
                "quoteCoin": "USDT",
                "settleCoin": "USDT",
                "contractSize": CONTRACT_SIZE[s],
                "minLeverage": 1,
                "maxLeverage": 125,
                "priceScale": 1,
                "volScale": 0,
                "amountScale": 4,
                "priceUnit": float(i["tick"]),
                "volUnit": 1,
                "minVol": 1,
                "maxVol": 1000000,
                "state": 0,
                "takerFeeRate": 0.0002,
                "makerFeeRate": 0,
                "apiAllowed": True,
                "type": 1,
                "isNew": False,
                "isHot": False,
                "isHidden": False,
                "futureType": 1,
            }
            for s, i in INSTRUMENTS.items()
        ]
        return _swap(rows)

    def _swap_create(self, body: dict[str, Any]) -> Reply:
        symbol = _symbol_of(body["symbol"])
        kind = int(body["type"])
        tif = {2: "PO", 3: "IOC", 4: "FOK"}.get(kind, "GTC")
        side = "buy" if int(body["side"]) in (1, 2) else "sell"
        try:
            order = self.place(
                client_id=body.get("externalOid", ""),
                symbol=symbol,
                side=side,
                kind="market" if kind in (5, 6) else "limit",
                qty=float(body["vol"]) * CONTRACT_SIZE[symbol],
                price=float(body.get("price") or 0),
                tif=tif,
                reduce_only=int(body["side"]) in (2, 4),
                market="linear",
            )
        except Duplicate:
            return _swap(code=2011, message="Duplicate externalOid")
        return _swap({"orderId": order.order_id, "ts": order.created})

    # --- trigger orders (`planorder`): held apart from the matching engine --------------------

    #: executeCycle → how long a trigger order lives unfired: 1 = 24 hours, 2 = 7 days.
    CYCLES_MS = {1: 24 * 3600 * 1000, 2: 7 * 24 * 3600 * 1000}

    def _plan(self, o: FakeOrder) -> dict[str, Any]:
        state = {"new": 1, "canceled": 2, "filled": 3}.get(o.status, 4)
        return {
            "id": o.algo_id,
            "symbol": _swap_id(o.symbol),
            "leverage": 20,
            "side": {("buy", False): 1, ("sell", True): 4, ("sell", False): 3, ("buy", True): 2}[
                (o.side, o.reduce_only)],
            "triggerPrice": o.trigger,
            "price": o.price,
            "vol": round(o.qty / CONTRACT_SIZE[o.symbol], 8),
            "openType": 2,
            "triggerType": 1 if o.rising else 2,
            "state": state,
            "executeCycle": 2 if o.expires - o.created > self.CYCLES_MS[1] else 1,
            "trend": 1,
            "orderType": 5,
            "orderId": o.actual_id or "0",  # the order it became once fired
            "errorCode": 0,
            "externalOid": o.client_id,
            "createTime": o.created,
            "updateTime": o.updated,
        }

    def _plan_place(self, body: dict[str, Any]) -> Reply:
        """A trigger order: fires as the last price reaches `triggerPrice` from
        below (triggerType 1: price >= trigger) or above (2: price <= trigger),
        within its executeCycle; then a market order of the matching engine."""
        cycle = int(body.get("executeCycle") or 0)
        if int(body.get("triggerType") or 0) not in (1, 2) or cycle not in self.CYCLES_MS:
            return _swap(code=2003, message="parameter error: triggerType or executeCycle")
        symbol = _symbol_of(body["symbol"])
        client_id = str(body.get("externalOid") or uuid.uuid4().hex)
        if client_id in self.orders:
            return _swap(code=2011, message="Duplicate externalOid")
        now = int(time.time() * 1000)
        order = FakeOrder(client_id, symbol, "buy" if int(body["side"]) in (1, 2) else "sell", "market",
                          float(body["vol"]) * CONTRACT_SIZE[symbol], 0.0, "GTC", int(body["side"]) in (2, 4),
                          trigger=float(body["triggerPrice"]), market="linear",
                          algo_id=str(7 * 10**17 + len(self.orders)), rising=int(body["triggerType"]) == 1,
                          expires=now + self.CYCLES_MS[cycle])
        self.orders[client_id] = order
        return Reply(200, {"success": True, "code": 0, "data": int(order.algo_id)})

    def _plans(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        plans = [o for o in self.orders.values() if o.algo_id]
        if path == "/api/v1/private/planorder/place":
            return self._plan_place(body)
        if path == "/api/v1/private/planorder/cancel":
            for item in body if isinstance(body, list) else []:
                order = next((o for o in plans if o.algo_id == str(item.get("orderId"))), None)
                if order is None or self.cancel(client_id=order.client_id) is None:
                    return _swap(code=2041, message="order state cannot be cancelled")
            return _swap(None)
        states = {int(x) for x in str(query.get("states") or "1,2,3,4,5").split(",") if x}
        symbol = _symbol_of(query["symbol"]) if query.get("symbol") else ""
        return _swap([self._plan(o) for o in plans if self._plan(o)["state"] in states
                      and (not symbol or o.symbol == symbol)])

    def _contract(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        if path.startswith("/api/v1/private/planorder/"):
            return self._plans(method, path, query, body)
        if path == "/api/v1/contract/detail":
            return self._swap_detail()
        if path == "/api/v1/contract/ping":
            return _swap(int(time.time() * 1000))
        if path == "/api/v1/private/order/create":
            return self._swap_create(body)
        if path == "/api/v1/private/order/cancel_with_external":
            order = self.cancel(client_id=body.get("externalOid", ""))
            return _swap(None) if order else _swap(code=2041, message="order state cannot be cancelled")
        if path.startswith("/api/v1/private/order/external/"):
            order = self.find(client_id=path.rsplit("/", 1)[1])
            return _swap(self._swap_order(order)) if order else _swap(code=2040, message="order not exist")
        if path.startswith("/api/v1/private/order/list/open_orders"):
            swap_id = path.removeprefix("/api/v1/private/order/list/open_orders").strip("/") or query.get(
                "symbol"
            )
            symbol = _symbol_of(swap_id or "")
            return _swap([self._swap_order(o) for o in self.open_orders(symbol) if not o.algo_id])
        if path == "/api/v1/private/order/list/order_deals":
            size = min(100, int(query.get("page_size") or 20))
            trades, _after = self.page(
                self.my_trades(
                    _symbol_of(query.get("symbol", "")),
                    int(query.get("start_time") or 0),
                    int(query["end_time"]) if query.get("end_time") else None,
                    newest_first=True,
                ),
                (int(query.get("page_num") or 1) - 1) * size,
                size,
            )
            return _swap([self._swap_deal(t) for t in trades])
        if path == "/api/v1/private/position/open_positions":
            return _swap(self._swap_positions(query))
        return _swap(code=1002, message=f"unknown endpoint {method} {path}")

    def _swap_positions(self, query: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        for symbol, info in INSTRUMENTS.items():
            net = self.position(symbol)
            if abs(net) < 1e-12 or (query.get("symbol") and _symbol_of(query["symbol"]) != symbol):
                continue
            rows.append(
                {
                    "positionId": 1,
                    "symbol": _swap_id(symbol),
                    "positionType": 1 if net > 0 else 2,
                    "openType": 2,
                    "state": 1,
                    "holdVol": round(abs(net) / CONTRACT_SIZE[symbol], 8),
                    "frozenVol": 0,
                    "closeVol": 0,
                    "holdAvgPrice": info["price"],
                    "openAvgPrice": info["price"],
                    "closeAvgPrice": 0,
                    "liquidatePrice": 0,
                    "oim": 0,
                    "im": 0,
                    "holdFee": 0,
                    "realised": 0,
                    "leverage": 20,
                    "createTime": 1,
                    "updateTime": 1,
                    "autoAddIm": False,
                }
            )
        return rows

    def route(self, method: str, path: str, query: dict[str, str], body: str) -> Reply:
        if path.startswith("/api/v1/"):
            return self._contract(method, path, query, json.loads(body) if body else {})
        return self._spot(method, path, query)
