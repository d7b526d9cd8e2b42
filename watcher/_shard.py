"""Sharding: N machines split one job list between them, `--shard K/N` each, K from 0 to N-1.

Every machine reads the same inputs and keeps only the job ids its shard owns. Ownership is a
stable hash (SHA-256 of the id, not Python's salted `hash()`), so every machine, every run and
every Python version agrees on who owns what, and each id is owned by exactly one shard. The
tenant's rate limit is shared too: each of the N machines gets 1/N of it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass

from watcher._errors import ConfigError

_SHARD = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count); `Shard(0, 1)` owns everything."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= K < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, job_id: str) -> bool:
        """Whether this shard handles `job_id`; exactly one shard of the N owns each id."""
        return shard_of(job_id, self.count) == self.index

    def rate(self, total_rate: float) -> float:
        """This shard's share of the tenant's `total_rate` (requests per second): total / N."""
        return total_rate / self.count


def shard_of(job_id: str, count: int) -> int:
    """The index of the shard, out of `count`, that owns `job_id`.

    The first 8 bytes of SHA-256(UTF-8 id) as a big-endian integer, modulo `count`: stable across
    processes and machines, and even (the modulo bias is below 2**-40 for any practical N).
    """
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def _problem(text: str) -> tuple[Shard | None, str]:
    """The shard `text` names, or None and what is wrong with it."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        return None, "must be K/N, two whole numbers with 0 <= K < N (e.g. 0/4)"
    index, count = int(match[1]), int(match[2])
    if count < 1:
        return None, "N (the number of shards) must be at least 1"
    if index >= count:
        return None, f"K must be less than N: shards are numbered 0 to {count - 1}"
    return Shard(index, count), ""


def parse_shard(text: str) -> Shard:
    """The shard `K/N` names; ConfigError naming `--shard` and saying what is wrong."""
    shard, problem = _problem(text)
    if shard is None:
        raise ConfigError(f"--shard {text!r}: {problem}")
    return shard


def shard_type(text: str) -> Shard:
    """`parse_shard` as an argparse `type=`: argparse prints `argument --shard: ...` itself."""
    shard, problem = _problem(text)
    if shard is None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return shard
