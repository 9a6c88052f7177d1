"""A local fake of Binance's REST API: the subset ccxt uses for USDⓈ-M
futures (`/fapi`) and spot (`/api/v3`), served over real HTTP.

Private calls are authenticated as Binance does: the `X-MBX-APIKEY` header
and `signature` = hex HMAC-SHA256(secret, the query string — or the form
body for POST — before `&signature=`); a wrong one answers -1022. A repeated
client order id is -4116 on futures and -2010 "Duplicate order sent." on
spot; an unknown order -2013 (fetch) / -2011 (cancel); a rate limit HTTP
429 with -1003. The account and the faults are `FakeExchange`'s.

Futures' conditional orders live in the algo service (`/fapi/v1/algoOrder`,
`/fapi/v1/openAlgoOrders`, by `clientAlgoId`), as Binance has required since
December 2025: when the price reaches the trigger, the algo order fires as a
new market order of the matching engine (`actualOrderId`, its own client
order id), whose trades carry that order's id, and becomes FINISHED.

Private streams: futures through a listen key (`POST /fapi/v1/listenKey`
with the API key, then `/private/ws?listenKey=...`) pushing
ORDER_TRADE_UPDATE; spot through the ws-api (`/ws-api/v3`,
`userDataStream.subscribe.signature` with `signature` = HMAC-SHA256 of the
sorted, url-encoded params) pushing executionReport events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tests.support.fake_exchange import INSTRUMENTS, Duplicate, FakeExchange, FakeOrder, FakeTrade, Reply
from tests.support.fake_stream import StreamConnection

__all__ = ["FakeBinance"]

_STATUS = {
    "new": "NEW",
    "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED",
    "canceled": "CANCELED",
    "rejected": "REJECTED",
}
_ORDER_PATHS = ("/fapi/v1/order", "/api/v3/order")


def _error(code: int, message: str, status: int = 400) -> Reply:
    return Reply(status, {"code": code, "msg": message})


def _filters(info: dict[str, Any], futures: bool) -> list[dict[str, Any]]:
    notional = (
        {"filterType": "MIN_NOTIONAL", "notional": "5"}
        if futures
        else {
            "filterType": "NOTIONAL",
            "minNotional": "5",
            "applyMinToMarket": True,
            "maxNotional": "9000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        }
    )
    return [
        {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": info["tick"]},
        {"filterType": "LOT_SIZE", "minQty": info["min_qty"], "maxQty": "1000", "stepSize": info["step"]},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": info["min_qty"],
            "maxQty": "120",
            "stepSize": info["step"],
        },
        notional,
    ]


class FakeBinance(FakeExchange):
    fault_paths = (*_ORDER_PATHS, "/fapi/v1/openOrders", "/api/v3/openOrders", "/fapi/v1/algoOrder")
    has_stream = True

    def __init__(self, api_key: str = "test-key", secret: str = "test-secret") -> None:
        super().__init__(api_key, secret)
        self.listen_keys: set[str] = set()
        self.countdown_calls: list[tuple[str, int]] = []  # (symbol, countdownTime ms) as received

    # --- the private streams: futures by listen key, spot by a signed ws-api subscription ----

    def ws_open(self, conn: StreamConnection) -> str | None:
        if conn.path == "/private/ws":
            if conn.query.get("listenKey") not in self.listen_keys:
                self.ws_signed(False)
                return json.dumps({"error": {"code": -1125, "msg": "This listenKey does not exist."}})
            self.ws_signed(True)
            conn.state["market"] = "linear"
        return None

    def ws_receive(self, conn: StreamConnection, message: Any) -> list[Any]:
        request_id = message.get("id")
        if message.get("method") != "userDataStream.subscribe.signature":
            return [{"id": request_id, "status": 200, "result": {}}]
        params = dict(message.get("params") or {})
        signature = str(params.pop("signature", ""))
        payload = urlencode(sorted(params.items()))
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        good = params.get("apiKey") == self.api_key and hmac.compare_digest(expected, signature)
        self.ws_signed(good)
        if not good:
            error = {"code": -1022, "msg": "Signature for this request is not valid."}
            return [{"id": request_id, "status": 400, "error": error}]
        conn.state["market"] = "spot"
        return [{"id": request_id, "status": 200, "result": {"subscriptionId": 0}}]

    def ws_following(self, conn: StreamConnection) -> bool:
        return "market" in conn.state

    def ws_events(self, conn: StreamConnection, kind: str, item: Any) -> list[Any]:
        order = item.order if kind == "trade" else item
        filling = kind == "order" and order.status in ("partially_filled", "filled")
        if conn.state.get("market") != order.market or filling:
            return []  # a fill's order change is in its trade's report
        report = self._report(order, item if kind == "trade" else None)
        now = int(time.time() * 1000)
        if order.market == "linear":
            return [{"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": report}]
        return [{"subscriptionId": 0, "event": {"e": "executionReport", "E": now, **report}}]

    @staticmethod
    def _report(o: FakeOrder, trade: FakeTrade | None) -> dict[str, Any]:
        """An execution report: futures' `o` of ORDER_TRADE_UPDATE, spot's executionReport."""
        canceled = o.status == "canceled"
        report = {
            "s": o.symbol,
            "c": f"cancel-{o.order_id}" if canceled else o.client_id,
            "C": o.client_id if canceled else "",
            "S": o.side.upper(),
            "o": o.kind.upper(),
            "f": {"PO": "GTX"}.get(o.tif, o.tif),
            "q": str(o.qty),
            "p": str(o.price),
            "x": "TRADE" if trade else ("CANCELED" if canceled else "NEW"),
            "X": _STATUS[o.status],
            "i": int(o.order_id),
            "l": str(trade.qty if trade else 0),
            "z": str(o.filled),
            "L": str(trade.price if trade else 0),
            "n": str(trade.fee if trade else 0),
            "N": "USDT",
            "T": trade.ts if trade else o.updated,
            "t": int(trade.trade_id) if trade else -1,
            "m": bool(trade and trade.maker),
            "O": o.created,
        }
        if o.market == "linear":
            report.update(ap=str(o.avg), sp="0", R=o.reduce_only, ps="BOTH", ot=report["o"], rp="0")
        else:
            quote = trade.qty * trade.price if trade else 0
            report.update(Z=str(o.value), Y=str(quote), Q="0", w=not canceled)
        return report

    def authenticate(self, method: str, path: str, query: str, body: str, headers: Any) -> bool | None:
        if path.endswith("/listenKey"):  # the API key alone, no signature
            return headers.get("X-MBX-APIKEY") == self.api_key
        signed = query if method in ("GET", "DELETE") else body
        if "signature=" not in signed:
            return None
        payload, _, signature = signed.rpartition("&signature=")
        if headers.get("X-MBX-APIKEY") != self.api_key:
            return False
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def bad_signature(self) -> Reply:
        return _error(-1022, "Signature for this request is not valid.")

    def rate_limited(self) -> Reply:
        return _error(-1003, "Too many requests; current limit of IP is 2400 requests per minute.", 429)

    # --- payloads ---------------------------------------------------------------------------

    @staticmethod
    def _order(o: FakeOrder, futures: bool) -> dict[str, Any]:
        order = {
            "orderId": int(o.order_id),
            "symbol": o.symbol,
            "status": _STATUS[o.status],
            "clientOrderId": o.client_id,
            "price": str(o.price),
            "origQty": str(o.qty),
            "executedQty": str(o.filled),
            "timeInForce": {"PO": "GTX"}.get(o.tif, o.tif),
            "type": ("STOP_MARKET" if o.trigger else o.kind.upper()),
            "side": o.side.upper(),
            "stopPrice": str(o.trigger),
            "time": o.created,
            "updateTime": o.updated,
        }
        if futures:
            order.update(
                avgPrice=str(o.avg),
                cumQuote=str(o.value),
                reduceOnly=o.reduce_only,
                positionSide="BOTH",
                origType=order["type"],
                workingType="CONTRACT_PRICE",
            )
        else:
            order.update(
                cummulativeQuoteQty=str(o.value),
                isWorking=True,
                workingTime=o.created,
                origQuoteOrderQty="0",
                selfTradePreventionMode="NONE",
            )
            if o.tif == "PO":
                order["type"], order["timeInForce"] = "LIMIT_MAKER", "GTC"
        return order

    @staticmethod
    def _trade(t: FakeTrade, futures: bool) -> dict[str, Any]:
        o = t.order
        trade = {
            "symbol": o.symbol,
            "id": int(t.trade_id),
            "orderId": int(o.order_id),
            "price": str(t.price),
            "qty": "" if t.qty is None else str(t.qty),
            "quoteQty": "" if t.qty is None else str(t.qty * t.price),
            "commission": str(t.fee),
            "commissionAsset": "USDT",
            "time": t.ts,
        }
        if futures:
            trade.update(
                side=o.side.upper(),
                realizedPnl="0",
                positionSide="BOTH",
                buyer=o.side == "buy",
                maker=t.maker,
            )
        else:
            trade.update(isBuyer=o.side == "buy", isMaker=t.maker, isBestMatch=True, orderListId=-1)
        return trade

    def _create(self, params: dict[str, str], futures: bool) -> Reply:
        symbol = params.get("symbol", "")
        if symbol not in INSTRUMENTS:
            return _error(-1121, "Invalid symbol.")
        kind = params["type"].lower()
        tif = params.get("timeInForce", "GTC")
        if kind == "limit_maker":
            kind, tif = "limit", "PO"
        trigger = float(params.get("stopPrice") or 0)
        if kind == "stop_market":
            kind = "market"
        try:
            order = self.place(
                client_id=params.get("newClientOrderId", ""),
                symbol=symbol,
                side=params["side"].lower(),
                kind=kind,
                qty=float(params["quantity"]),
                price=float(params.get("price") or 0),
                tif={"GTX": "PO"}.get(tif, tif),
                reduce_only=params.get("reduceOnly") == "true",
                trigger=trigger,
                market="linear" if futures else "spot",
            )
        except Duplicate:
            if futures:
                return _error(-4116, "ClientOrderId is duplicated.")
            return _error(-2010, "Duplicate order sent.")
        return Reply(200, self._order(order, futures))

    # --- the algo service: futures' conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET) ------

    @staticmethod
    def _algo(o: FakeOrder) -> dict[str, Any]:
        status = {"new": "NEW", "canceled": "CANCELED"}.get(o.status, "FINISHED")
        return {
            "algoId": int(o.algo_id),
            "clientAlgoId": o.client_id,
            "algoType": "CONDITIONAL",
            "orderType": "STOP_MARKET" if o.rising == (o.side == "buy") else "TAKE_PROFIT_MARKET",
            "symbol": o.symbol,
            "side": o.side.upper(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": str(o.qty),
            "algoStatus": status,
            "triggerPrice": str(o.trigger),
            "price": "0",
            "workingType": "CONTRACT_PRICE",
            "closePosition": False,
            "priceProtect": False,
            "reduceOnly": o.reduce_only,
            "createTime": o.created,
            "updateTime": o.updated,
            "triggerTime": o.updated if status == "FINISHED" else 0,
            "actualOrderId": o.actual_id,
            "executedQty": str(o.filled),
            "avgPrice": str(o.avg),
        }

    def _create_algo(self, params: dict[str, str]) -> Reply:
        if params.get("algoType") != "CONDITIONAL":
            return _error(-1116, "Invalid algoType.")
        if params.get("type") not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            return _error(-1116, "Invalid orderType.")
        if params.get("symbol") not in INSTRUMENTS or not params.get("triggerPrice"):
            return _error(-1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
        client_id = params.get("clientAlgoId") or secrets.token_hex(8)
        if client_id in self.orders:
            return _error(-4116, "ClientOrderId is duplicated.")
        side = params["side"].lower()
        # STOP_MARKET: a buy fires as the price rises to the trigger, a sell as it
        # falls; TAKE_PROFIT_MARKET the other way round.
        rising = (side == "buy") == (params["type"] == "STOP_MARKET")
        order = FakeOrder(client_id, params["symbol"], side, "market", float(params["quantity"]), 0.0, "GTC",
                          params.get("reduceOnly") == "true", trigger=float(params["triggerPrice"]),
                          market="linear", algo_id=str(10**9 + len(self.orders)), rising=rising)
        self.orders[client_id] = order
        return Reply(200, self._algo(order))

    def _algo_route(self, method: str, path: str, params: dict[str, str]) -> Reply:
        if path == "/fapi/v1/openAlgoOrders":
            symbol = params.get("symbol", "")
            return Reply(200, [self._algo(o) for o in self.open_orders(symbol) if o.algo_id])
        if method == "POST":
            return self._create_algo(params)
        order = next((o for o in self.orders.values() if o.algo_id and (
            o.client_id == params.get("clientAlgoId") or o.algo_id == params.get("algoId"))), None)
        if method == "DELETE":
            if order is None or self.cancel(client_id=order.client_id) is None:
                return _error(-2011, "Unknown order sent.")
            return Reply(200, {"algoId": int(order.algo_id), "clientAlgoId": order.client_id, "code": "200",
                               "msg": "success"})
        return Reply(200, self._algo(order)) if order else _error(-2013, "Order does not exist.")

    def _positions(self, params: dict[str, str]) -> Reply:
        rows = []
        for symbol, info in INSTRUMENTS.items():
            if params.get("symbol") and params["symbol"] != symbol:
                continue
            net = self.position(symbol)
            rows.append(
                {
                    "symbol": symbol,
                    "positionSide": "BOTH",
                    "positionAmt": str(net),
                    "entryPrice": str(info["price"] if net else 0),
                    "breakEvenPrice": "0",
                    "markPrice": str(info["price"]),
                    "unRealizedProfit": "0",
                    "liquidationPrice": "0",
                    "isolatedMargin": "0",
                    "notional": str(net * info["price"]),
                    "marginAsset": "USDT",
                    "isolatedWallet": "0",
                    "initialMargin": "0",
                    "maintMargin": "0",
                    "positionInitialMargin": "0",
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": int(time.time() * 1000),
                    "leverage": "10",
                    "marginType": "cross",
                    "isAutoAddMargin": "false",
                }
            )
        return Reply(200, rows)

    def _exchange_info(self, futures: bool) -> Reply:
        symbols = []
        for symbol, info in INSTRUMENTS.items():
            row: dict[str, Any] = {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": info["base"],
                "quoteAsset": "USDT",
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "filters": _filters(info, futures),
                "orderTypes": ["LIMIT", "MARKET", "STOP_MARKET"],
            }
            if futures:
                row.update(
                    pair=symbol,
                    contractType="PERPETUAL",
                    deliveryDate=4133404800000,
                    onboardDate=1569398400000,
                    marginAsset="USDT",
                    pricePrecision=2,
                    quantityPrecision=3,
                    underlyingType="COIN",
                    settlePlan=0,
                    timeInForce=["GTC", "IOC", "FOK", "GTX"],
                    maintMarginPercent="2.5",
                    requiredMarginPercent="5.0",
                    triggerProtect="0.05",
                    liquidationFee="0.0125",
                    marketTakeBound="0.05",
                )
            else:
                row.update(
                    quoteAssetPrecision=8,
                    baseCommissionPrecision=8,
                    quoteCommissionPrecision=8,
                    icebergAllowed=True,
                    ocoAllowed=True,
                    quoteOrderQtyMarketAllowed=True,
                    allowTrailingStop=True,
                    cancelReplaceAllowed=True,
                    isSpotTradingAllowed=True,
                    isMarginTradingAllowed=False,
                    permissions=[],
                    permissionSets=[["SPOT"]],
                    defaultSelfTradePreventionMode="NONE",
                    allowedSelfTradePreventionModes=["NONE"],
                )
            symbols.append(row)
        return Reply(
            200,
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [],
                "exchangeFilters": [],
                "assets": [],
                "symbols": symbols,
            },
        )

    def _balances(self, futures: bool) -> Reply:
        coins = ("USDT",) if futures else ("USDT", "BTC", "ETH")
        if futures:
            assets = [
                {
                    "asset": c,
                    "walletBalance": str(self.balance(c)),
                    "unrealizedProfit": "0",
                    "marginBalance": str(self.balance(c)),
                    "availableBalance": str(self.balance(c)),
                    "maxWithdrawAmount": str(self.balance(c)),
                    "crossWalletBalance": str(self.balance(c)),
                    "initialMargin": "0",
                    "maintMargin": "0",
                    "positionInitialMargin": "0",
                    "openOrderInitialMargin": "0",
                    "crossUnPnl": "0",
                    "marginAvailable": True,
                    "updateTime": 0,
                }
                for c in coins
            ]
            return Reply(
                200,
                {
                    "assets": assets,
                    "positions": [],
                    "canTrade": True,
                    "totalWalletBalance": "0",
                    "availableBalance": str(self.balance("USDT")),
                    "updateTime": 0,
                },
            )
        balances = [{"asset": c, "free": str(self.balance(c)), "locked": "0"} for c in coins]
        return Reply(
            200,
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "updateTime": 0,
            },
        )

    def route(self, method: str, path: str, query: dict[str, str], body: str) -> Reply:
        params = {**query, **dict(parse_qsl(body))}
        futures = path.startswith("/fapi")
        base = "/fapi/v1" if futures else "/api/v3"
        if path == "/fapi/v1/listenKey":
            if method == "POST":
                self.listen_keys.add(secrets.token_hex(32))
                return Reply(200, {"listenKey": sorted(self.listen_keys)[-1]})
            return Reply(200, {})
        if path in ("/fapi/v1/exchangeInfo", "/api/v3/exchangeInfo"):
            return self._exchange_info(futures)
        if path in ("/fapi/v1/time", "/api/v3/time"):
            return Reply(200, {"serverTime": int(time.time() * 1000)})
        if path == "/fapi/v1/countdownCancelAll" and method == "POST":
            symbol, ms = params.get("symbol", ""), params.get("countdownTime", "")
            if symbol not in INSTRUMENTS or not ms.isdigit():
                return _error(-1102, "symbol and countdownTime are mandatory")
            self.arm_countdown(symbol, int(ms) / 1000)
            self.countdown_calls.append((symbol, int(ms)))
            return Reply(200, {"symbol": symbol, "countdownTime": ms})
        if path in ("/fapi/v1/algoOrder", "/fapi/v1/openAlgoOrders"):
            return self._algo_route(method, path, params)
        if path == f"{base}/order" and method == "POST":
            return self._create(params, futures)
        if path == f"{base}/order" and method in ("GET", "DELETE"):
            client_id, order_id = params.get("origClientOrderId", ""), params.get("orderId", "")
            if method == "DELETE":
                order = self.cancel(client_id=client_id, order_id=order_id)
                return (
                    Reply(200, self._order(order, futures)) if order else _error(-2011, "Unknown order sent.")
                )
            order = self.find(client_id=client_id, order_id=order_id)
            return (
                Reply(200, self._order(order, futures)) if order else _error(-2013, "Order does not exist.")
            )
        if path == f"{base}/openOrders":  # the algo service's are not the matching engine's
            orders = [o for o in self.open_orders(params.get("symbol", "")) if not o.algo_id]
            return Reply(200, [self._order(o, futures) for o in orders])
        if path == f"{base}/allOrders":
            symbol = params.get("symbol", "")
            return Reply(200, [self._order(o, futures) for o in self.orders.values() if o.symbol == symbol])
        if path in ("/fapi/v1/userTrades", "/api/v3/myTrades"):
            if params.get("fromId") and (params.get("startTime") or params.get("endTime")):
                return _error(-4134, "fromId cannot be sent with startTime or endTime.")
            trades = [
                t
                for t in self.my_trades(
                    params.get("symbol", ""),
                    int(params.get("startTime") or 0),
                    int(params["endTime"]) if params.get("endTime") else None,
                )
                if int(t.trade_id) >= int(params.get("fromId") or 0)
            ]
            limit = min(1000, int(params.get("limit") or 500))
            return Reply(200, [self._trade(t, futures) for t in trades[:limit]])
        if path == "/fapi/v1/leverageBracket":
            bracket = {
                "bracket": 1,
                "initialLeverage": 125,
                "notionalCap": 50000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.004,
                "cum": 0.0,
            }
            return Reply(200, [{"symbol": s, "brackets": [bracket]} for s in INSTRUMENTS])
        if path.startswith("/fapi/") and path.endswith("/positionRisk"):
            return self._positions(params)
        if path in (
            "/fapi/v2/account",
            "/fapi/v3/account",
            "/fapi/v2/balance",
            "/fapi/v3/balance",
            "/api/v3/account",
        ):
            return self._balances(futures)
        return _error(-1000, f"unknown endpoint {method} {path}", 404)
