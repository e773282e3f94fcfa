"""The JSON endpoints: each turns its URL into the protocol request the socket would get, asks
the daemon through the socket's own handlers, and answers the reply as it is (docs/http-api.md).
A bad parameter is a 400 whose `error` names it; an unknown resource or query a 404.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, get_args

from aiohttp import web

from patience.daemon.http.view import AskError, DaemonView
from patience.daemon.protocol import QueryKind

__all__ = ["Api", "ApiError"]

QUERIES = get_args(QueryKind)


class ApiError(Exception):
    """An answer other than 200: the status and the message for `{"error": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"{name}: expected Unix seconds (a number 0 or more), got {text!r}")
    return value


def _tools(name: str, text: str) -> list[str]:
    return [tool for tool in text.replace(" ", ",").split(",") if tool]


def _text(name: str, text: str) -> str:
    return text


def _whole(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, f"{name}: expected a whole number, got {text!r}")
    return int(text)


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ApiError(400, f"{name}: expected true or false, got {text!r}")
    return text.lower() in ("true", "1")


Converter = Callable[[str, str], object]
QUERY_PARAMS: dict[str, Converter] = {
    "resource_id": _text,
    "start": _seconds,
    "end": _seconds,
    "tools": _tools,
}
# The timeseries and runs requests' own fields, checked further by the protocol's decoder.
TIMESERIES_PARAMS: dict[str, Converter] = {
    "resource": _text,
    "tool": _text,
    "start": _seconds,
    "end": _seconds,
    "step": _text,
    "group_by": _text,
    "histogram": _flag,
}
ALERTS_PARAMS: dict[str, Converter] = {"all": _flag}
RUNS_PARAMS: dict[str, Converter] = {
    "resource": _text,
    "tool": _text,
    "start": _seconds,
    "end": _seconds,
    "after": _whole,
    "limit": _whole,
}


def params(query: Mapping[str, str], known: Mapping[str, Converter]) -> dict[str, Any]:
    """The query string's parameters converted, each at most once, none unknown."""
    out: dict[str, Any] = {}
    for name, text in query.items():
        convert = known.get(name)
        if convert is None:
            raise ApiError(400, f"unknown parameter {name!r} (known: {', '.join(known)})")
        if name in out:
            raise ApiError(400, f"parameter {name!r} given twice")
        out[name] = convert(name, text)
    return out


class Api:
    """The handlers, over a view of the daemon."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/api/v1/status", self.status),
            web.get("/api/v1/resources", self.resources),
            web.get("/api/v1/resources/{resource_id:.+}", self.resource),
            web.get("/api/v1/query/{name}", self.query),
            web.get("/api/v1/timeseries", self.timeseries),
            web.get("/api/v1/runs", self.runs),
            web.get("/api/v1/alerts", self.alerts),
            web.get("/api/v1/fleet", self.fleet),
        ]

    def ask(self, request: Mapping[str, object]) -> dict[str, Any]:
        try:
            return self.view.ask(request)
        except AskError as exc:
            raise ApiError(400, str(exc)) from None

    async def healthz(self, request: web.Request) -> web.Response:
        status = self.ask({"type": "status"})
        return web.json_response(
            {"status": "ok", "version": status["version"], "uptime": status["uptime"]}
        )

    async def status(self, request: web.Request) -> web.Response:
        params(request.query, {})
        return web.json_response(self.ask({"type": "status"}))

    async def resources(self, request: web.Request) -> web.Response:
        params(request.query, {})
        return web.json_response(self.ask({"type": "resource_state"}))

    async def resource(self, request: web.Request) -> web.Response:
        params(request.query, {})
        resource_id = request.match_info["resource_id"]
        reply = self.ask({"type": "resource_state", "resource_id": resource_id})
        if not reply.get("resources"):
            raise ApiError(404, f"no resource {resource_id!r} is tracked now")
        return web.json_response(reply)

    async def query(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in QUERIES:
            raise ApiError(404, f"no query {name!r} (known: {', '.join(QUERIES)})")
        given = params(request.query, QUERY_PARAMS)
        message: dict[str, object] = {"type": "query", "query": name}
        if "resource_id" in given:
            message["resource_id"] = given["resource_id"]
        if "tools" in given:
            message["tools"] = given["tools"]
        span = {key: given[key] for key in ("start", "end") if key in given}
        if span:
            message["time_range"] = span
        return web.json_response(self.ask(message))

    async def timeseries(self, request: web.Request) -> web.Response:
        given = params(request.query, TIMESERIES_PARAMS)
        return web.json_response(self.ask({"type": "timeseries", **given}))

    async def runs(self, request: web.Request) -> web.Response:
        given = params(request.query, RUNS_PARAMS)
        return web.json_response(self.ask({"type": "runs", **given}))

    async def alerts(self, request: web.Request) -> web.Response:
        """Pending and firing alerts (`?all=1`: the resolved ones remembered too), with the
        notifiers' counters: the `alerts` query's reply."""
        given = params(request.query, ALERTS_PARAMS)
        return web.json_response(self.ask({"type": "alerts", "all": given.get("all", False)}))

    async def fleet(self, request: web.Request) -> web.Response:
        """The live daemons sharing this one's Redis: the `fleet` query's reply; a daemon on
        the memory backend has no fleet (404, saying so)."""
        params(request.query, {})
        try:
            return web.json_response(self.view.ask({"type": "fleet"}))
        except AskError as exc:
            raise ApiError(404, str(exc)) from None
