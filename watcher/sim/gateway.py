"""The API gateway in front of the simulated API: authentication, throttling, error bodies.

For every route except object storage (`/obs/...`), in this order:

1. A path that is no API (nor storage) -> 404 `APIGW.0101`.
2. Authentication -> 401 `APIGW.0301`. Token mode: `X-Auth-Token` must equal the configured token.
   AK/SK mode: the `Authorization: SDK-HMAC-SHA256 ...` header must name the configured AK, sign
   at least `host` and `x-sdk-date`, and carry the signature of the canonical request rebuilt
   from the request as received (with `watcher._auth`, the same code the client signs with);
   `X-Sdk-Date` must be within `max_skew` of the wall clock; temporary credentials need the
   matching `X-Security-Token`.
3. Project -> 403 `MSS.000000004`: `X-Project-Id` (required with AK/SK) and the path's project id
   must equal the configured project id.
4. Throttling, when a rate limit is set -> 429 `APIGW.0308`: a sliding window per API name.
5. Injected faults (`watcher.sim.faults`), when the config asks for them: a delay, an error answer
   instead of the handler's, or the handler's answer cut short by closing the connection.

Handlers report errors by raising `ApiFault`. Every answer carries `X-Request-Id` (uuid4 hex),
equal to the body's `request_id` on errors. Storage and the `/_sim/` introspection routes are
not guarded, counted or faulted here.
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio
import orjson
from aiohttp import web

from watcher._auth import (
    AkSk,
    Token,
    canonical_request,
    parse_authorization,
    parse_sdk_date,
    signature,
)
from watcher.sim.config import SimConfig
from watcher.sim.faults import Fault, Faults
from watcher.sim.jobs import Clock
from watcher.sim.stats import SimStats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IAM_FAILED = "Incorrect IAM authentication information: "
BAD_SIGNATURE = IAM_FAILED + "verify aksk signature fail"
NO_TOKEN = IAM_FAILED + "x-auth-token not found"
BAD_TOKEN = IAM_FAILED + "decrypt token fail"
TOKEN_EXPIRED = IAM_FAILED + "token expires"
PROJECT_MISMATCH = "Illegal access: the project id does not match the credentials"
STORAGE_ROUTE = "Storage"
SIM_STATS_ROUTE = "SimStats"
SIM_FILES_ROUTE = "SimFiles"
UNGUARDED_ROUTES = frozenset({STORAGE_ROUTE, SIM_STATS_ROUTE, SIM_FILES_ROUTE})
NO_SUCH_API = "The API does not exist or has not been published in the environment"
INTERNAL_ERROR = "Internal error"
QUERY_FAILED = "Failed to query the job: the job service is temporarily unavailable"
FAULT_THROTTLE_RATE = 10  # the limit a `throttle` fault names when no rate_limit is set


class ApiFault(Exception):
    """An error answer: HTTP `status` with body `{"error_code", "error_msg", "request_id"}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets, for any characters a client may send."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def json_response(doc: object, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


class Throttle:
    """A sliding-window limit per API name: at most `capacity` requests in any `window` seconds.

    For a whole-number `rate` that is `rate` requests per one second; a fractional rate keeps the
    same average with `capacity = ceil(rate)` over `capacity / rate` seconds.
    """

    __slots__ = ("_clock", "_hits", "capacity", "window")

    def __init__(self, rate: float, clock: Clock) -> None:
        self.capacity = math.ceil(rate)
        self.window = self.capacity / rate
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def __repr__(self) -> str:
        live = {api: len(hits) for api, hits in self._hits.items()}
        return f"Throttle(capacity={self.capacity}, window={self.window:g}, live={live})"

    def admit(self, api: str) -> bool:
        """Whether one more request to `api` is within the limit now (and if so, count it)."""
        now = self._clock()
        hits = self._hits.setdefault(api, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.capacity:
            return False
        hits.append(now)
        return True

    def message(self) -> str:
        """The APIGW.0308 error message, as the real gateway words it."""
        return throttle_message(self.capacity, self.window)


def throttle_message(capacity: int, window: float) -> str:
    """The APIGW.0308 error message for a limit of `capacity` requests per `window` seconds."""
    return (
        "The throttling threshold has been reached: policy user over ratelimit,"
        f"limit:{capacity},time:{window:g} second"
    )


async def send_cut_short(
    request: web.Request,
    status: int,
    headers: Mapping[str, str],
    length: int,
    part: Iterable[bytes],
) -> web.StreamResponse:
    """Send a status line and `headers` announcing `length` body bytes, then only `part` of the
    body, then close the connection: the client sees the response end early."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    for chunk in part:
        await response.write(chunk)
    if request.transport is not None:
        request.transport.close()
    return response


class Gateway:
    """Authenticates, throttles, faults and counts API requests; `middleware` plugs it into
    aiohttp."""

    __slots__ = ("_config", "_faults", "_stats", "_throttle", "_wall")

    def __init__(
        self, config: SimConfig, *, clock: Clock, wall: Clock, stats: SimStats, faults: Faults
    ) -> None:
        self._config = config
        self._wall = wall
        self._stats = stats
        self._faults = faults
        self._throttle = None if config.rate_limit is None else Throttle(config.rate_limit, clock)

    def __repr__(self) -> str:
        mode = "token" if isinstance(self._config.credentials, Token) else "aksk"
        return f"Gateway(mode={mode}, throttle={self._throttle!r})"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Storage and `/_sim/` requests pass through; API requests are checked, answered
        (or faulted) and counted."""
        match = request.match_info
        if match.http_exception is None and match.route.name in UNGUARDED_ROUTES:
            return await handler(request)
        request_id = uuid.uuid4().hex
        api = match.route.name if match.http_exception is None else None
        cut_short = False
        try:
            if api is None:
                raise ApiFault(404, "APIGW.0101", NO_SUCH_API)
            await self._authenticate(request)
            self._check_project(request)
            if self._throttle is not None and not self._throttle.admit(api):
                raise ApiFault(429, "APIGW.0308", self._throttle.message())
            cut_short = await self._inject_fault(api)
            response = await handler(request)
        except ApiFault as fault:
            body = {"error_code": fault.code, "error_msg": fault.message, "request_id": request_id}
            response = json_response(body, fault.status)
        response.headers["X-Request-Id"] = request_id
        self._stats.record(api or "Unknown", response.status)
        if cut_short and isinstance(response, web.Response) and isinstance(response.body, bytes):
            whole = response.body
            headers = {k: v for k, v in response.headers.items() if k != "Content-Length"}
            part = whole[: len(whole) // 2]
            return await send_cut_short(request, response.status, headers, len(whole), [part])
        return response

    async def _inject_fault(self, api: str) -> bool:
        """Apply this request's fault decision: wait if slow, raise an error answer, or return
        True when the handler's answer is to be cut short."""
        decision = self._faults.for_api(api)
        if decision.slow:
            await anyio.sleep(self._faults.plan.slow_seconds)
        fault = decision.fault
        if fault is Fault.AUTH_401:
            raise ApiFault(401, "APIGW.0301", TOKEN_EXPIRED)
        if fault is Fault.THROTTLE:
            throttle = self._throttle
            capacity, window = (
                (FAULT_THROTTLE_RATE, 1.0)
                if throttle is None
                else (throttle.capacity, throttle.window)
            )
            raise ApiFault(429, "APIGW.0308", throttle_message(capacity, window))
        if fault is Fault.API_500:
            raise ApiFault(500, "MSS.000000002", INTERNAL_ERROR)
        if fault is Fault.ERROR_200:
            raise ApiFault(200, "MSS.000000001", QUERY_FAILED)
        return fault is Fault.API_RESET

    async def _authenticate(self, request: web.Request) -> None:
        credentials = self._config.credentials
        headers = request.headers
        if isinstance(credentials, Token):
            token = headers.get("X-Auth-Token")
            if token is None:
                raise ApiFault(401, "APIGW.0301", NO_TOKEN)
            if not same(token, credentials.token):
                raise ApiFault(401, "APIGW.0301", BAD_TOKEN)
            return
        header = headers.get("Authorization")
        if header is None:
            message = BAD_TOKEN if "X-Auth-Token" in headers else NO_TOKEN
            raise ApiFault(401, "APIGW.0301", message)
        if not await self._signature_ok(request, header, credentials):
            raise ApiFault(401, "APIGW.0301", BAD_SIGNATURE)

    async def _signature_ok(self, request: web.Request, header: str, credentials: AkSk) -> bool:
        try:
            parsed = parse_authorization(header)
        except ValueError:
            return False
        signed = parsed.signed_headers
        if parsed.access != credentials.ak or "host" not in signed or "x-sdk-date" not in signed:
            return False
        values: dict[str, str] = {}
        for name in signed:
            value = request.headers.get(name)
            if value is None:
                return False
            values[name] = value
        sdk_date = values["x-sdk-date"]
        try:
            sent_at = parse_sdk_date(sdk_date).timestamp()
        except ValueError:
            return False
        if abs(self._wall() - sent_at) > self._config.max_skew:
            return False
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise ApiFault(413, "APIGW.0201", "Request entity too large") from exc
        path = request.raw_path.partition("?")[0]
        canonical = canonical_request(
            request.method, path, request.query.items(), values, signed, body
        )
        expected = signature(credentials.sk, sdk_date, canonical)
        if not same(expected, parsed.signature):
            return False
        if credentials.security_token is not None:
            sent = request.headers.get("X-Security-Token", "")
            return same(sent, credentials.security_token)
        return True

    def _check_project(self, request: web.Request) -> None:
        path_project = request.match_info.get("project_id")
        header_project = request.headers.get("X-Project-Id")
        if header_project is None and isinstance(self._config.credentials, AkSk):
            raise ApiFault(403, "MSS.000000004", PROJECT_MISMATCH + " (X-Project-Id is missing)")
        if header_project is not None and header_project != path_project:
            raise ApiFault(403, "MSS.000000004", PROJECT_MISMATCH)
        if path_project != self._config.project_id:
            raise ApiFault(403, "MSS.000000004", PROJECT_MISMATCH)
