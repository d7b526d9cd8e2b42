"""Sharding: parsing `K/N`, stable and even ownership, the rate share."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid

import pytest

from watcher._errors import ConfigError
from watcher._shard import Shard, parse_shard, shard_of, shard_type

IDS = [uuid.UUID(int=i * 0x9E3779B97F4A7C15 + 17).hex for i in range(10_000)]


@pytest.mark.parametrize(
    ("text", "index", "count"), [("0/1", 0, 1), ("3/7", 3, 7), (" 1/2 ", 1, 2)]
)
def test_parse_shard_reads_k_of_n(text: str, index: int, count: int) -> None:
    """`K/N` becomes Shard(K, N) and prints back as `K/N`."""
    shard = parse_shard(text)
    assert shard == Shard(index, count)
    assert str(shard) == f"{index}/{count}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2/2", "K must be less than N"),
        ("5/3", "0 to 2"),
        ("0/0", "at least 1"),
        ("-1/2", "K/N"),
        ("1", "K/N"),
        ("a/b", "K/N"),
        ("1/2/3", "K/N"),
        ("", "K/N"),
    ],
)
def test_parse_shard_names_the_flag_and_the_problem(text: str, says: str) -> None:
    """Each bad value is a ConfigError naming --shard, the value and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        parse_shard(text)
    assert str(caught.value).startswith(f"--shard {text!r}: ")
    assert says in str(caught.value)


def test_shard_type_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    """As an argparse type, a bad value is a usage error (exit 2) naming --shard."""
    parser = argparse.ArgumentParser(prog="watcher run")
    parser.add_argument("--shard", type=shard_type)
    assert parser.parse_args(["--shard", "1/4"]).shard == Shard(1, 4)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--shard", "4/4"])
    assert caught.value.code == 2
    assert "argument --shard: '4/4': K must be less than N" in capsys.readouterr().err


def test_shard_refuses_impossible_values() -> None:
    """Building a Shard directly checks 0 <= K < N too."""
    with pytest.raises(ValueError, match="0 <= K < N"):
        Shard(2, 2)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_id_has_exactly_one_owner_and_the_split_is_even(count: int) -> None:
    """Over 10,000 ids each is owned by exactly one of N shards, each within 15% of 1/N."""
    shards = [Shard(k, count) for k in range(count)]
    owned = [0] * count
    for job_id in IDS:
        owners = [s.index for s in shards if s.owns(job_id)]
        assert len(owners) == 1
        owned[owners[0]] += 1
    expected = len(IDS) / count
    assert all(abs(n - expected) <= 0.15 * expected for n in owned), owned


def test_ownership_is_stable_across_processes() -> None:
    """A fresh interpreter with another hash seed assigns the same shards (no use of hash())."""
    here = [shard_of(job_id, 7) for job_id in IDS[:200]]
    code = (
        "import sys; from watcher._shard import shard_of; "
        "print(','.join(str(shard_of(i, 7)) for i in sys.argv[1:]))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code, *IDS[:200]],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        timeout=30,
    )
    assert done.stdout.strip() == ",".join(map(str, here))


def test_ownership_is_pinned() -> None:
    """Known ids map to known shards: changing the hash would reshuffle running fleets."""
    ids = ("a", "job-000", "0dd6a32cc059f534d7bfc82d73d9c869")
    assert [shard_of(job_id, 4) for job_id in ids] == [2, 1, 1]


def test_rate_is_the_total_divided_by_n() -> None:
    """Each of N machines gets 1/N of the tenant's rate."""
    assert Shard(0, 1).rate(10) == 10
    assert Shard(2, 4).rate(10) == 2.5
