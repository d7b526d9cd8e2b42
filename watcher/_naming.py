"""File names from a template: `--name '{chapter}-{job_id}'` names each job's files after fields
of its input line. The default, `{job_id}`, keeps names unique by construction.

Names are made safe (anything but letters, digits, `.`, `_`, `-` becomes `_`; no leading dot; at
most 120 characters), so no template or input value can reach outside `--out`. A template is
checked when the run starts (plain field names only: no attribute or index access). A line that
lacks a field the template uses, or whose name another job already has, is refused when it is
read, as an INVALID line naming the other job, before anything is polled or saved.
"""

from __future__ import annotations

import re
import string
from collections.abc import AsyncIterator
from dataclasses import replace

from watcher._errors import ConfigError, InputError
from watcher._inputs import Job

DEFAULT = "{job_id}"
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


def check_template(template: str) -> list[str]:
    """The field names `template` uses; ConfigError (naming --name) when it is unusable."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"--name {template!r}: {exc}") from None
    fields = [field for _, field, _, _ in parts if field is not None]
    if not fields:
        raise ConfigError(f"--name {template!r} uses no field: every job would get the same name")
    for field in fields:
        if not field.isidentifier():
            raise ConfigError(f"--name {template!r}: {{{field}}} is not a plain field name")
    return fields


def safe(name: str) -> str:
    """`name` with unsafe characters replaced, no leading dots, at most MAX_NAME characters."""
    return UNSAFE.sub("_", name).lstrip(".")[:MAX_NAME]


class Namer:
    """Names jobs' files by a template and refuses names that are already taken."""

    __slots__ = ("_owners", "_template")

    def __init__(self, template: str = DEFAULT) -> None:
        check_template(template)
        self._template = template
        self._owners: dict[str, str] = {}

    def name(self, job: Job) -> str:
        """The safe file stem of `job`; ValueError when a field is missing or the name is taken."""
        if self._template == DEFAULT:
            return job.job_id  # already safe, and unique once duplicates are dropped
        fields = {**job.meta, "job_id": job.job_id}
        try:
            name = safe(self._template.format_map(fields))
        except KeyError as exc:
            raise ValueError(
                f"--name needs the field {exc.args[0]!r}, which this line lacks"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--name cannot be filled from this line: {exc}") from None
        if not name:
            raise ValueError("--name gives this line an empty file name")
        owner = self._owners.setdefault(name, job.job_id)
        if owner != job.job_id:
            raise ValueError(f"--name gives this line the file name {name!r} of job {owner}")
        return name

    async def apply(
        self, items: AsyncIterator[Job | InputError]
    ) -> AsyncIterator[Job | InputError]:
        """`items` with each job's `name` set, or an InputError for a job that cannot be named."""
        async for item in items:
            if isinstance(item, InputError):
                yield item
                continue
            try:
                yield replace(item, name=self.name(item))
            except ValueError as exc:
                yield InputError(item.source, item.line, str(exc))
