"""watcher: watch batches of Huawei Cloud MetaStudio asynchronous TTS jobs.

Job ids go in (a file, or stdin as a submitter prints them); every job is polled under one shared
rate limit at the documented 3-second cadence; finished jobs' audio and subtitle files are saved;
one JSONL manifest line is written per job.
"""

from __future__ import annotations

__version__ = "0.1.0"
