"""What every schedule of instants offers once it can say its next one: the next few, and
how many fall between two moments (the cron schedule and the local-time waves)."""

from __future__ import annotations

from datetime import datetime

COUNT_LIMIT = 10_000
"""How many missed occurrences are counted (for the log line) before giving up counting."""


class Occurrences:
    """A schedule that knows :meth:`next_after`; the rest comes from it."""

    def next_after(self, moment: datetime) -> datetime:
        raise NotImplementedError

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` occurrences after ``after``."""
        found: list[datetime] = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            found.append(moment)
        return found

    def count_between(self, after: datetime, until: datetime, limit: int = COUNT_LIMIT) -> int:
        """How many occurrences fall in (after, until), counting at most ``limit``."""
        count = 0
        moment = self.next_after(after)
        while moment < until and count < limit:
            count += 1
            moment = self.next_after(moment)
        return count
