"""`watcher report MANIFEST [--format json] [--html FILE]`: the flags, and the call to `_report`.

MANIFEST is a file, `-` (stdin), or the bucket of a `--out s3://...` run, whose ledger is read
from there into a temporary file first. 0 when every job SUCCEEDed and every line was readable,
else 1; errors are raised for `watcher.cli.main` to report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import anyio

from watcher import _report as reports
from watcher._bucket import Bucket, BucketUrl
from watcher._config import ReportConfig

DEFAULTS = ReportConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MANIFEST, --format and --html."""
    parser.add_argument("manifest", metavar="MANIFEST", help="a manifest.jsonl; '-' is stdin")
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default=DEFAULTS.format,
        help=f"text table or JSON ({DEFAULTS.format})",
    )
    parser.add_argument(
        "--html",
        type=Path,
        default=DEFAULTS.html,
        metavar="FILE",
        help="also write the night at a glance as one self-contained HTML page",
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 if every job SUCCEEDed and every line was readable, else 1.

    MANIFEST may be a bucket (`s3://BUCKET/PREFIX`, as given to `watcher run --out`): its
    ledger is read from there. ConfigError when the manifest does not exist.
    """
    config = ReportConfig(format=args.format, html=args.html)
    url = BucketUrl.parse(args.manifest)
    if url is None:
        title = "<stdin>" if args.manifest == "-" else Path(args.manifest).name
        return _show(config, args.manifest, title)
    data = anyio.run(Bucket.open(url, os.environ).read_ledger)
    with tempfile.TemporaryDirectory(prefix="watcher-report-") as folder:
        local = Path(folder) / "manifest.jsonl"
        local.write_bytes(data)
        return _show(config, str(local), str(url))


def _warn(message: str) -> None:
    print(f"watcher: warning: {message}", file=sys.stderr)


def _show(config: ReportConfig, manifest: str, title: str) -> int:
    if config.html is None:
        report = reports.Report.from_path(manifest, warn=_warn)
    else:
        from watcher import _html as html  # imported here: the page module builds on `_report`

        report, records = html.load(manifest, _warn)
        html.write(config.html, report, records, title)
        print(f"watcher: wrote {config.html}", file=sys.stderr)
    text = reports.render_json(report) if config.format == "json" else reports.render_text(report)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0 if report.ok else 1
