"""Deterministic fault injection: which requests and jobs the simulator answers badly, and how.

A `FaultPlan` (part of `SimConfig`) holds a rate from 0 to 1 for each fault; every rate is 0 by
default, so a simulator injects nothing unless asked. A `Faults` makes the decisions and counts
what it injected.

Per request, one seeded `random.Random` per fault kind, so for a given `seed` and order of
eligible requests the decisions repeat exactly, and enabling one fault never changes which
requests another one hits:

- API requests (all three routes), drawn after the gateway's authentication, project check and
  `rate_limit` window have passed:
  `auth-401` 401 APIGW.0301 "token expires"; `throttle` 429 APIGW.0308; `api-500` 500
  MSS.000000002; `error-200` (ShowAsyncTtsJob only) a 200 error body with no `state`;
  `api-reset` the handler's answer (normally a 200) with its full `Content-Length` but half its
  body, then the connection closed (the handler has run: a reset CreateAsyncTtsJob did create its
  job); `slow` waits `slow_seconds` (real time, other requests go on) before answering.
  When several fire on one request, the first in that list is answered; `slow` adds its delay to
  whatever is answered. Only what is answered is counted.
- Storage requests with a valid link: `expired-link` answers the 403 "Request has expired" XML;
  `short-download` (GET with a file to send) sends the full `Content-Length` but only part of the
  body, then closes the connection.

Per job, independent of the seed: `unknown-state` is decided by a hash of the job id (like
failures), so `canceled(job_id)` tells in advance which jobs will report `CANCELED` once done.
It is counted once per job, the first time a CANCELED state is reported.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from watcher.sim.jobs import id_hash

DEFAULT_SLOW_SECONDS = 35.0
SHOW_JOB_API = "ShowAsyncTtsJob"
_HASH_SPAN = float(2**64)


class Fault(StrEnum):
    """The faults, by the names the CLI and `/_sim/stats` use; `field` is the FaultPlan field."""

    API_500 = "api-500"
    API_RESET = "api-reset"
    THROTTLE = "throttle"
    SLOW = "slow"
    ERROR_200 = "error-200"
    AUTH_401 = "auth-401"
    UNKNOWN_STATE = "unknown-state"
    SHORT_DOWNLOAD = "short-download"
    EXPIRED_LINK = "expired-link"

    @property
    def field(self) -> str:
        """The FaultPlan field holding this fault's rate."""
        return self.value.replace("-", "_")


# Which answer wins when several API faults fire on one request: the gateway's own refusals
# first, then the backend's, then the transport's.
API_PRECEDENCE = (
    Fault.AUTH_401,
    Fault.THROTTLE,
    Fault.API_500,
    Fault.ERROR_200,
    Fault.API_RESET,
)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How often each fault is injected: a rate from 0 (never) to 1 (every eligible request or
    job). `slow_seconds` is how long a `slow` request waits, in real (unscaled) seconds.

    Raises ValueError naming the field when a rate is not a number from 0 to 1, or
    `slow_seconds` is not a finite number >= 0.
    """

    api_500: float = 0.0
    api_reset: float = 0.0
    throttle: float = 0.0
    slow: float = 0.0
    error_200: float = 0.0
    auth_401: float = 0.0
    unknown_state: float = 0.0
    short_download: float = 0.0
    expired_link: float = 0.0
    slow_seconds: float = DEFAULT_SLOW_SECONDS

    def __post_init__(self) -> None:
        problems = [
            f"{fault.field} must be a rate from 0 to 1, not {rate}"
            for fault in Fault
            if not (math.isfinite(rate := self.rate(fault)) and 0 <= rate <= 1)
        ]
        if not (math.isfinite(self.slow_seconds) and self.slow_seconds >= 0):
            problems.append(f"slow_seconds must be a finite number >= 0, not {self.slow_seconds}")
        if problems:
            raise ValueError("; ".join(problems))

    def rate(self, fault: Fault) -> float:
        """The rate of `fault`."""
        rate: float = getattr(self, fault.field)
        return rate

    @property
    def active(self) -> dict[Fault, float]:
        """The faults with a rate above 0, and their rates."""
        return {fault: rate for fault in Fault if (rate := self.rate(fault)) > 0}


NO_FAULTS = FaultPlan()


def parse_fault(spec: str) -> tuple[Fault, float]:
    """`NAME=RATE` (e.g. `api-500=0.1`) as a fault and its rate.

    Raises ValueError naming the spec and listing the valid names.
    """
    name, sep, raw = spec.partition("=")
    names = ", ".join(Fault)
    try:
        fault = Fault(name.strip().lower())
    except ValueError:
        raise ValueError(f"bad fault {spec!r}: give NAME=RATE with NAME one of {names}") from None
    try:
        rate = float(raw) if sep else math.nan
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        raise ValueError(f"bad fault {spec!r}: RATE must be a number from 0 to 1 (e.g. {name}=0.1)")
    return fault, rate


def plan_from_specs(specs: Iterable[str], *, slow_seconds: float | None = None) -> FaultPlan:
    """A plan from `NAME=RATE` specs (each fault at most once) and an optional `slow_seconds`.

    Raises ValueError for a bad or repeated spec, or a bad `slow_seconds`.
    """
    rates: dict[str, float] = {}
    for spec in specs:
        fault, rate = parse_fault(spec)
        if fault.field in rates:
            raise ValueError(f"bad fault {spec!r}: {fault} is given more than once")
        rates[fault.field] = rate
    plan = FaultPlan(**rates)
    return plan if slow_seconds is None else replace(plan, slow_seconds=slow_seconds)


@dataclass(frozen=True, slots=True)
class ApiDecision:
    """What to do to one API request: the fault to answer with (or None), and whether to wait
    `slow_seconds` first."""

    fault: Fault | None = None
    slow: bool = False


NO_FAULT = ApiDecision()


class Faults:
    """The decisions of one simulator, and counts of the faults it injected.

    Decisions are made on the server's event loop; `counts()` returns a copy made in one C-level
    call, so another thread may read it at any time.
    """

    __slots__ = ("_canceled", "_counts", "_rngs", "plan")

    def __init__(self, plan: FaultPlan, seed: int) -> None:
        self.plan = plan
        self._rngs = {fault: random.Random(f"{seed}:{fault}") for fault in Fault}
        self._counts: Counter[Fault] = Counter()
        self._canceled: set[str] = set()

    def __repr__(self) -> str:
        active = {str(fault): rate for fault, rate in self.plan.active.items()}
        return f"Faults(active={active}, injected={self.counts()})"

    def _fires(self, fault: Fault) -> bool:
        rate = self.plan.rate(fault)
        return rate > 0 and self._rngs[fault].random() < rate

    def _count(self, fault: Fault) -> None:
        self._counts[fault] += 1

    def for_api(self, api: str) -> ApiDecision:
        """The decision for one authenticated request to `api`, counted as injected."""
        if not self.plan.active:
            return NO_FAULT
        fired = [
            fault
            for fault in API_PRECEDENCE
            if (fault is not Fault.ERROR_200 or api == SHOW_JOB_API) and self._fires(fault)
        ]
        slow = self._fires(Fault.SLOW)
        fault = fired[0] if fired else None
        if fault is not None:
            self._count(fault)
        if slow:
            self._count(Fault.SLOW)
        return ApiDecision(fault, slow)

    def expire_link(self) -> bool:
        """Whether to refuse one download with a valid link as expired (counted if so)."""
        return self._decide(Fault.EXPIRED_LINK)

    def cut_download(self) -> bool:
        """Whether to cut one download short (counted if so)."""
        return self._decide(Fault.SHORT_DOWNLOAD)

    def _decide(self, fault: Fault) -> bool:
        fired = self._fires(fault)
        if fired:
            self._count(fault)
        return fired

    def canceled(self, job_id: str) -> bool:
        """Whether `job_id` reports CANCELED once finished: a hash of the id, not the seed."""
        rate = self.plan.unknown_state
        return rate > 0 and id_hash(job_id, "unknown-state") / _HASH_SPAN < rate

    def report_canceled(self, job_id: str) -> None:
        """Note that `job_id` was reported CANCELED; each job is counted once."""
        if job_id not in self._canceled:
            self._canceled.add(job_id)
            self._count(Fault.UNKNOWN_STATE)

    def counts(self) -> dict[str, int]:
        """Faults injected so far, by name; every fault is listed, 0 if never injected."""
        counted = dict(self._counts)
        return {str(fault): counted.get(fault, 0) for fault in Fault}
