"""A local fake of the Bybit v5 REST API: the subset ccxt uses for linear
USDT perpetuals, served over real HTTP.

Private calls are authenticated as Bybit does: `X-BAPI-SIGN` = hex
HMAC-SHA256(secret, timestamp + api_key + recv_window + (query string for
GET | body for POST)); a wrong one answers retCode 10004. Orders are kept and
market orders fill at once at the mark price; a repeated `orderLinkId` is
refused with retCode 110072, as Bybit does.

Faults for tests: `fail_next(kind, n)` with kind `5xx` (HTTP 502),
`ratelimit` (retCode 10006), `timeout` (answers after the client gave up),
`lost` (the order is placed, then the answer is lost: HTTP 504).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeBybit"]

INSTRUMENTS = {
    "BTCUSDT": {"base": "BTC", "min_qty": "0.001", "step": "0.001", "tick": "0.10", "price": 60000.0},
    "ETHUSDT": {"base": "ETH", "min_qty": "0.01", "step": "0.01", "tick": "0.01", "price": 3000.0},
}


class FakeBybit:
    def __init__(self, api_key: str = "test-key", secret: str = "test-secret") -> None:
        self.api_key, self.secret = api_key, secret
        self.orders: dict[str, dict[str, Any]] = {}  # by orderLinkId
        self.trades: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, bool]] = []  # method, path, signed
        self.bad_signatures = 0
        self.faults: deque[str] = deque()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeBybit:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.faults.extend([kind] * n)

    # --- the exchange ---------------------------------------------------------------------

    def _verify(self, headers: Any, payload: str) -> bool:
        key, ts = headers.get("X-BAPI-API-KEY"), headers.get("X-BAPI-TIMESTAMP")
        window, sign = headers.get("X-BAPI-RECV-WINDOW", ""), headers.get("X-BAPI-SIGN", "")
        if key != self.api_key or not ts:
            return False
        expected = hmac.new(self.secret.encode(), f"{ts}{key}{window}{payload}".encode(), hashlib.sha256)
        return hmac.compare_digest(expected.hexdigest(), sign)

    def _create(self, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        link = body.get("orderLinkId") or uuid.uuid4().hex
        if link in self.orders:
            return 110072, "OrderLinkedID is duplicate", {}
        symbol = body["symbol"]
        if symbol not in INSTRUMENTS:
            return 10001, f"params error: symbol invalid {symbol}", {}
        qty, price = float(body["qty"]), float(body.get("price") or 0)
        mark = INSTRUMENTS[symbol]["price"]
        order = {"orderId": uuid.uuid4().hex, "orderLinkId": link, "symbol": symbol, "side": body["side"],
                 "orderType": body["orderType"], "price": body.get("price", "0"), "qty": body["qty"],
                 "timeInForce": body.get("timeInForce", "GTC"), "reduceOnly": bool(body.get("reduceOnly")),
                 "orderStatus": "New", "cumExecQty": "0", "avgPrice": "0", "cumExecValue": "0",
                 "cumExecFee": "0", "createdTime": str(int(time.time() * 1000)),
                 "updatedTime": str(int(time.time() * 1000)), "leavesQty": body["qty"]}
        crosses = body["orderType"] == "Market" or (body["side"] == "Buy" and price >= mark) or (
            body["side"] == "Sell" and 0 < price <= mark)
        if body.get("timeInForce") == "PostOnly" and crosses:
            order["orderStatus"] = "Cancelled"
        elif crosses:
            self._fill(order, qty, mark)
        self.orders[link] = order
        return 0, "OK", {"orderId": order["orderId"], "orderLinkId": link}

    def _fill(self, order: dict[str, Any], qty: float, price: float) -> None:
        order.update(orderStatus="Filled", cumExecQty=str(qty), avgPrice=str(price),
                     cumExecValue=str(qty * price), cumExecFee=str(qty * price * 0.00055), leavesQty="0")
        self.trades.append({"symbol": order["symbol"], "orderId": order["orderId"],
                            "orderLinkId": order["orderLinkId"], "side": order["side"],
                            "execPrice": str(price),
                            "execQty": str(qty), "execFee": str(qty * price * 0.00055),
                            "execId": uuid.uuid4().hex, "execTime": str(int(time.time() * 1000)),
                            "orderType": order["orderType"], "isMaker": False, "feeRate": "0.00055",
                            "execValue": str(qty * price), "closedSize": "0", "orderPrice": order["price"],
                            "orderQty": order["qty"], "leavesQty": "0", "execType": "Trade"})

    def _cancel(self, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        order = self.orders.get(body.get("orderLinkId", "")) or next(
            (o for o in self.orders.values() if o["orderId"] == body.get("orderId")), None)
        if order is None or order["orderStatus"] not in ("New", "PartiallyFilled"):
            return 110001, "order not exists or too late to cancel", {}
        order["orderStatus"] = "Cancelled"
        return 0, "OK", {"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}

    def _orders(self, query: dict[str, str], open_only: bool) -> dict[str, Any]:
        found = [o for o in self.orders.values()
                 if (not query.get("symbol") or o["symbol"] == query["symbol"])
                 and (not query.get("orderLinkId") or o["orderLinkId"] == query["orderLinkId"])
                 and (not query.get("orderId") or o["orderId"] == query["orderId"])
                 and (not open_only or o["orderStatus"] in ("New", "PartiallyFilled"))]
        return {"category": "linear", "list": found, "nextPageCursor": ""}

    def _positions(self, query: dict[str, str]) -> dict[str, Any]:
        rows = []
        for symbol, info in INSTRUMENTS.items():
            if query.get("symbol") and query["symbol"] != symbol:
                continue
            net = sum((float(t["execQty"]) if t["side"] == "Buy" else -float(t["execQty"]))
                      for t in self.trades if t["symbol"] == symbol)
            rows.append({"symbol": symbol, "side": "Buy" if net > 0 else ("Sell" if net < 0 else ""),
                         "size": str(abs(net)), "avgPrice": str(info["price"] if net else 0),
                         "positionValue": str(abs(net) * info["price"]), "markPrice": str(info["price"]),
                         "leverage": "10", "positionIdx": 0, "unrealisedPnl": "0", "cumRealisedPnl": "0",
                         "createdTime": "1", "updatedTime": "1", "tradeMode": 0, "positionStatus": "Normal"})
        return {"category": "linear", "list": rows}

    def _instruments(self) -> dict[str, Any]:
        rows = [{"symbol": s, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": i["base"],
                 "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1", "deliveryTime": "0",
                 "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100",
                                                       "leverageStep": "0.01"},
                 "priceFilter": {"minPrice": "0.1", "maxPrice": "1999999", "tickSize": i["tick"]},
                 "lotSizeFilter": {"maxOrderQty": "100", "minOrderQty": i["min_qty"], "qtyStep": i["step"],
                                   "minNotionalValue": "5"}, "fundingInterval": 480}
                for s, i in INSTRUMENTS.items()]
        return {"category": "linear", "list": rows, "nextPageCursor": ""}

    def _route(self, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> tuple[int, str, Any]:
        if path == "/v5/market/instruments-info":
            return 0, "OK", self._instruments() if query.get("category") == "linear" else {"list": []}
        if path == "/v5/market/time":
            now = time.time()
            return 0, "OK", {"timeSecond": str(int(now)), "timeNano": str(int(now * 1e9))}
        if path == "/v5/order/create":
            return self._create(body)
        if path == "/v5/order/cancel":
            return self._cancel(body)
        if path == "/v5/order/realtime":
            return 0, "OK", self._orders(query, open_only=query.get("openOnly", "0") == "0"
                                         and not query.get("orderLinkId") and not query.get("orderId"))
        if path == "/v5/order/history":
            return 0, "OK", self._orders(query, open_only=False)
        if path == "/v5/position/list":
            return 0, "OK", self._positions(query)
        if path == "/v5/execution/list":
            trades = [t for t in self.trades if not query.get("symbol") or t["symbol"] == query["symbol"]]
            return 0, "OK", {"category": "linear", "list": trades, "nextPageCursor": ""}
        if path == "/v5/account/wallet-balance":
            return 0, "OK", {"list": [{"accountType": "UNIFIED", "coin": [
                {"coin": "USDT", "walletBalance": "100000", "equity": "100000",
                 "availableToWithdraw": "100000", "locked": "0", "totalPositionIM": "0", "totalOrderIM": "0",
                 "usdValue": "100000"}]}]}
        if path in ("/v5/account/info", "/v5/user/query-api"):
            return 0, "OK", {"unifiedMarginStatus": 6, "marginMode": "REGULAR_MARGIN"}
        return 10001, f"unknown endpoint {path}", {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                signed = "X-BAPI-SIGN" in self.headers
                with fake.lock:
                    fake.requests.append((self.command, parts.path, signed))
                    ordering = parts.path.startswith("/v5/order/")
                    fault = fake.faults.popleft() if fake.faults and ordering else None
                if signed and not fake._verify(self.headers, raw if self.command == "POST" else parts.query):
                    fake.bad_signatures += 1
                    return self._json(200, {"retCode": 10004, "retMsg": "error sign! origin_string[...]",
                                            "result": {}, "time": int(time.time() * 1000)})
                if fault == "5xx":
                    return self._json(502, {"error": "bad gateway"})
                if fault == "ratelimit":
                    return self._json(200, {"retCode": 10006, "retMsg": "Too many visits!", "result": {}})
                body = json.loads(raw) if raw else {}
                with fake.lock:
                    query = dict(parse_qsl(parts.query))
                    code, message, result = fake._route(self.command, parts.path, query, body)
                if fault == "timeout":
                    time.sleep(3.0)
                if fault == "lost":
                    return self._json(504, {"error": "gateway timeout"})
                self._json(200, {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {},
                                 "time": int(time.time() * 1000)})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler
