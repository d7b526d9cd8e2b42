"""Request counters that tests and benchmarks read: per API name, and per API name and status.

API names are the operation names of the official SDK (`CreateAsyncTtsJob`, `ShowAsyncTtsJob`,
`ShowTtsJob`), `Storage` for result downloads, and `Unknown` for paths that match no API.
"""

from __future__ import annotations

from collections import Counter


class SimStats:
    """Counts of requests answered, by API and by (API, HTTP status).

    `record` is called on the server's event loop; `requests()` and `statuses()` return copies
    made in one C-level call, so another thread (a test, a benchmark) may read them at any time.
    """

    __slots__ = ("_by_api", "_by_status")

    def __init__(self) -> None:
        self._by_api: Counter[str] = Counter()
        self._by_status: Counter[tuple[str, int]] = Counter()

    def record(self, api: str, status: int) -> None:
        """Count one answered request."""
        self._by_api[api] += 1
        self._by_status[api, status] += 1

    def requests(self) -> dict[str, int]:
        """Requests answered so far, by API name."""
        return dict(self._by_api)

    def statuses(self) -> dict[tuple[str, int], int]:
        """Requests answered so far, by (API name, HTTP status)."""
        return dict(self._by_status)

    def count(self, api: str, status: int | None = None) -> int:
        """Requests answered for `api`, only those with `status` when given."""
        if status is None:
            return self._by_api.get(api, 0)
        return self._by_status.get((api, status), 0)

    def __repr__(self) -> str:
        return f"SimStats({dict(self._by_api)!r})"
