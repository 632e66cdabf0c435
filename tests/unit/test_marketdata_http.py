"""Reading a venue's Retry-After header: seconds or an HTTP date; anything else is ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from kubetrade.runner.marketdata.http import _retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), (None, None), ("", None),
     ("soon", None), ("Wed, 21 Oct 2015 07:28:00", None)],  # a date without a zone: unusable
)  # fmt: skip
def test_seconds_and_unreadable_values(header: str | None, seconds: float | None) -> None:
    assert _retry_after(header) == seconds


def test_an_http_date_counts_from_now() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    wait = _retry_after(header)
    assert wait is not None and 85 <= wait <= 90
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert _retry_after(past) == 0.0
