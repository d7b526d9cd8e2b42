"""`watcher submit [TEXTS ...]`: the flags, and the call to the submit engine (`_submit.py`).

The flags give the body fields for lines that lack them, the rate, `--rest FILE` and
`--keep-text`; job lines go to stdout (a too long `text` left out with a warning, so `watcher
run` can read the line), messages to stderr as `watcher submit: ...`, then a summary of what
became of the lines. 0 when every line became a job, 1 when some did not; flags, credentials and
inputs are checked before anything is sent (ConfigError), and the error that stopped submitting
(AuthError, an unreachable API) is raised after the summary, for `watcher.cli.main` to report.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from watcher import _loop as loop
from watcher import _submit as submitting
from watcher._errors import ConfigError
from watcher._inputs import MAX_LINE_BYTES as RUN_LINE_BYTES
from watcher._inputs import check_inputs
from watcher._options import add_api_arguments, api_config, positive

POLICY = submitting.SubmitPolicy()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """TEXTS..., the body defaults, --rate, --keep-text and the API flags."""
    parser.add_argument(
        "inputs", nargs="*", metavar="TEXTS", help="JSON lines with 'text'; '-' or none: stdin"
    )
    parser.add_argument("--voice-asset-id", metavar="ID", help="for lines without voice_asset_id")
    parser.add_argument(
        "--audio-format", choices=["WAV", "MP3"], help="for lines without audio_format"
    )
    parser.add_argument(
        "--gen-srt", action=argparse.BooleanOptionalAction, help="for lines without gen_srt"
    )
    parser.add_argument(
        "--need-timestamp",
        action=argparse.BooleanOptionalAction,
        help="for lines without need_timestamp",
    )
    parser.add_argument(
        "--rate",
        type=positive(float, 10_000),
        default=POLICY.rate,
        help="CreateAsyncTtsJob requests a second",
    )
    parser.add_argument(
        "--rest",
        type=Path,
        metavar="FILE",
        help="write every input line not submitted (bad, refused, unanswered, not tried) to FILE, "
        "as it was, for a later `watcher submit FILE`",
    )
    parser.add_argument(
        "--keep-text",
        action="store_true",
        help="print each line's text beside its job id too (left out when the line would be too "
        "long for watcher run)",
    )
    add_api_arguments(parser)


def body_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The body fields the flags give, for lines that lack them."""
    defaults: dict[str, Any] = {}
    if args.voice_asset_id:
        defaults["voice_asset_id"] = args.voice_asset_id
    if args.audio_format:
        defaults["audio_format"] = args.audio_format
    for name in ("gen_srt", "need_timestamp"):
        if getattr(args, name) is not None:
            defaults[name] = getattr(args, name)
    return defaults


def _emit(record: Mapping[str, Any]) -> None:
    data = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    if len(data) > RUN_LINE_BYTES and "text" in record:
        _warn(f"job {record['job_id']}: text left out: the line would be too long for watcher run")
        data = orjson.dumps(
            {k: v for k, v in record.items() if k != "text"}, option=orjson.OPT_APPEND_NEWLINE
        )
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _warn(message: str) -> None:
    print(f"watcher submit: {message}", file=sys.stderr, flush=True)


def _write(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)


def _open_rest(path: Path) -> IO[bytes]:
    try:
        return path.open("wb")
    except OSError as exc:
        raise ConfigError(f"--rest {path}: {exc.strerror}") from exc


def run(args: argparse.Namespace) -> int:
    """Submit every line; 0 if every line became a job, 1 if some did not. Raises ConfigError
    (flags, credentials, a missing input) before anything is sent, and the error that stopped
    submitting (AuthError, an unreachable API) after the summary."""
    check_inputs(args.inputs)
    api = api_config(args, os.environ, Path.home())
    policy = replace(POLICY, rate=args.rate)
    rest_file = _open_rest(args.rest) if args.rest is not None else None
    try:
        submit = partial(
            submitting.submit,
            emit=_emit,
            warn=_warn,
            policy=policy,
            keep_text=args.keep_text,
            rest=None if rest_file is None else partial(_write, rest_file),
        )
        tally = loop.run(submit, api, args.inputs, body_defaults(args))
    finally:
        if rest_file is not None:
            rest_file.close()
    not_submitted = tally.lines - tally.created
    where = f"; written to {args.rest}" if args.rest is not None and not_submitted else ""
    print(
        f"watcher submit: lines: {tally.lines}, jobs created: {tally.created}, not submitted: "
        f"{not_submitted} ({tally.bad} bad, {tally.failed} refused by the API or "
        f"unanswered, {tally.skipped} not tried){where}",
        file=sys.stderr,
    )
    if tally.stopped is not None:
        print(
            "watcher submit: stopped: lines after the last job printed were not submitted"
            + ("" if args.rest is not None else " (--rest FILE keeps them for a rerun)"),
            file=sys.stderr,
        )
        raise tally.stopped
    return 0 if tally.all_submitted else 1
