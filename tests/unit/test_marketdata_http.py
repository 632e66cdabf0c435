"""Reading a venue's Retry-After header: seconds or an HTTP date; anything else is ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from kubetrade.runner.marketdata.http import retry_after_seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), (None, None), ("", None),
     ("soon", None), ("inf", None), ("1e999", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:00", None)],  # a date without a zone: unusable
)  # fmt: skip
def test_seconds_and_unreadable_values(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_an_http_date_counts_from_now() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    wait = retry_after_seconds(header)
    assert wait is not None and 85 <= wait <= 90
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(past) == 0.0
