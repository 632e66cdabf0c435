"""Generate the SYNTHETIC sample bars btcusdt_1m_synthetic.csv and .parquet.

Usage (from the repository root):

    PYTHONSAFEPATH=1 .venv/bin/python examples/data/make_sample.py

The bars are invented by this script: they are NOT real BTC/USDT prices and must not
be used for research or to judge a strategy. They exist so that the demos and tests
have a realistic-looking minute series to replay without shipping third-party data.

Model (see README.md for the plain-words version): the price moves in SUBSTEPS small
multiplicative steps per one-minute bar. Each bar's volatility is a GARCH(1,1) variance
times an intraday seasonality factor (busiest around the 13:30-16:00 UTC US open) times
a regime factor. The series walks through a sequence of regimes of random length:
upward and downward trends (a constant drift), mean-reverting stretches (a pull back to
the price the stretch began at) and plain random walks. Rare jumps add fat tails.
Volume follows the recent volatility and the size of the bar's own move, times noise.

Determinism: one `random.Random(SEED)` (Mersenne Twister, defined bit for bit) and only
IEEE-754 +, -, *, /, math.sqrt and round(), all correctly rounded, so the output is
byte-identical on every run and machine; no libm function such as exp, log or cos, whose
last bit may differ between platforms. Normal variates are sums of 12 uniforms minus 6
(mean 0, variance 1, bounded at +-6). The script prints the CSV's SHA-256 and exits with
status 1 if it differs from EXPECTED_SHA256 (update that and README.md after an
intended change).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import duckdb

SEED = 20240304
EXPECTED_SHA256 = "bf14e754b0777df7e7c2108d9a428d15a7b1f5a5c0babca39b3325965c25a6b7"
SYMBOL = "BTCUSDT"
START = datetime(2024, 3, 4, tzinfo=UTC)  # the first bar's open time
BARS = 5000
START_PRICE = 62000.0
STEM = "btcusdt_1m_synthetic"
HERE = Path(__file__).resolve().parent

SUBSTEPS = 6  # price steps within one bar; high and low are the path's extremes
SQRT_SUBSTEPS = math.sqrt(SUBSTEPS)
BASE_SIGMA = 0.0008  # long-run per-minute return sd before the seasonal and regime factors
GARCH_ALPHA = 0.07  # weight of the last squared shock
GARCH_BETA = 0.91  # weight of the last variance; alpha + beta < 1 keeps it stationary
GARCH_OMEGA = (1.0 - GARCH_ALPHA - GARCH_BETA) * BASE_SIGMA * BASE_SIGMA
JUMP_PROBABILITY = 0.002  # per bar
WICK = 0.25  # high/low reach up to this many bar sigmas beyond the sampled path
BASE_VOLUME = 22.0  # BTC per minute at seasonality 1 and average activity
CROWD_PHI = 0.98  # persistence of the volume level
CROWD_SD = 0.3  # its stationary standard deviation
CROWD_KICK = CROWD_SD * math.sqrt(1.0 - CROWD_PHI * CROWD_PHI)
ABS_NORMAL_MEAN = 0.7978845608028654  # E|Z| = sqrt(2 / pi) for a standard normal

# Intraday volatility seasonality: (minute of the UTC day, factor), linear in between.
SEASON_KNOTS = (
    (0, 0.85),
    (6 * 60, 0.70),
    (8 * 60, 0.95),
    (13 * 60, 1.00),
    (13 * 60 + 30, 1.45),
    (14 * 60 + 30, 1.60),
    (16 * 60, 1.30),
    (17 * 60, 1.05),
    (21 * 60, 0.90),
    (24 * 60, 0.85),
)


@dataclass(frozen=True, slots=True)
class Regime:
    kind: str  # "up", "down", "revert" or "walk"
    bars: int  # how long it lasts
    drift: float  # per-minute drift of a trend
    pull: float  # per-minute pull back to the anchor of a mean-reverting stretch
    vol: float  # volatility factor


@dataclass(frozen=True, slots=True)
class Row:
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def normal(rng: random.Random) -> float:
    """An approximately standard normal variate (Irwin-Hall, n = 12)."""
    draw = rng.random
    total = 0.0
    for _ in range(12):
        total += draw()
    return total - 6.0


def chi_square(rng: random.Random, degrees: int) -> float:
    """A chi-square variate: the sum of `degrees` squared normals (mean `degrees`, >= 0)."""
    total = 0.0
    for _ in range(degrees):
        z = normal(rng)
        total += z * z
    return total


def season(minute_of_day: int) -> float:
    for (m0, f0), (m1, f1) in pairwise(SEASON_KNOTS):
        if m0 <= minute_of_day < m1:
            return f0 + (f1 - f0) * (minute_of_day - m0) / (m1 - m0)
    raise ValueError(minute_of_day)


def next_regime(rng: random.Random) -> Regime:
    pick = rng.random()
    bars = 150 + int(rng.random() * 550)
    if pick < 0.25:
        return Regime("up", bars, BASE_SIGMA * (0.03 + 0.05 * rng.random()), 0.0, 1.0)
    if pick < 0.50:
        return Regime("down", bars, -BASE_SIGMA * (0.03 + 0.05 * rng.random()), 0.0, 1.1)
    if pick < 0.80:
        return Regime("revert", bars, 0.0, 0.01 + 0.03 * rng.random(), 0.85)
    return Regime("walk", bars, 0.0, 0.0, 1.0)


def generate(seed: int = SEED, count: int = BARS) -> list[Row]:
    rng = random.Random(seed)
    rows: list[Row] = []
    price = START_PRICE  # the previous close, already rounded to 0.01
    variance = BASE_SIGMA * BASE_SIGMA  # GARCH variance of the deseasonalized return
    activity = 1.0  # a moving average of squared shocks, for volume clustering
    crowd = 0.0  # the slowly wandering participation level, see below
    regime = next_regime(rng)
    regime_left, anchor = regime.bars, price
    for index in range(count):
        if regime_left == 0:
            regime = next_regime(rng)
            regime_left, anchor = regime.bars, price
        regime_left -= 1
        time = START + timedelta(minutes=index)
        sigma = math.sqrt(variance) * season(time.hour * 60 + time.minute) * regime.vol
        drift = regime.drift - regime.pull * (price - anchor) / anchor
        step_mean, step_sd = drift / SUBSTEPS, sigma / SQRT_SUBSTEPS
        level = high = low = price
        shock = 0.0
        for _ in range(SUBSTEPS):
            z = normal(rng)
            shock += z
            level *= 1.0 + step_mean + step_sd * z
            high = max(high, level)
            low = min(low, level)
        shock /= SQRT_SUBSTEPS  # the bar's standardized shock, about N(0, 1)
        if rng.random() < JUMP_PROBABILITY:
            size = (3.0 + 3.0 * rng.random()) * (1.0 if rng.random() < 0.5 else -1.0)
            level *= 1.0 + size * sigma
            high = max(high, level)
            low = min(low, level)
            shock += size
        high *= 1.0 + WICK * sigma * rng.random()
        low *= 1.0 - WICK * sigma * rng.random()
        close = round(level, 2)
        # Rounding is monotonic, so low <= open, close <= high still holds afterwards.
        high, low = round(high, 2), round(low, 2)
        # Volume: recent activity and this bar's move, scaled by the time of day, times
        # two noise factors with mean 1: a slowly wandering level of participation,
        # (1 + crowd)^2 with crowd an AR(1) process, and a fresh chi-square draw
        # (8 degrees of freedom, over 8) for this minute.
        activity = 0.9 * activity + 0.1 * shock * shock
        move = abs(shock) / ABS_NORMAL_MEAN
        crowd = CROWD_PHI * crowd + CROWD_KICK * normal(rng)
        level_factor = (1.0 + crowd) * (1.0 + crowd) / (1.0 + CROWD_SD * CROWD_SD)
        fresh = chi_square(rng, 8) / 8.0
        volume = BASE_VOLUME * season(time.hour * 60 + time.minute) * level_factor * fresh
        volume *= 0.2 + 0.3 * math.sqrt(activity) + 0.5 * move
        volume = max(round(volume, 5), 0.001)
        rows.append(Row(time, price, high, low, close, volume))
        # GARCH(1,1) on the deseasonalized shock.
        variance = GARCH_OMEGA + GARCH_ALPHA * shock * shock * variance + GARCH_BETA * variance
        price = close
    return rows


def to_csv(rows: list[Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["time", "symbol", "open", "high", "low", "close", "volume"])
    for r in rows:
        writer.writerow(
            [
                r.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                SYMBOL,
                f"{r.open:.2f}",
                f"{r.high:.2f}",
                f"{r.low:.2f}",
                f"{r.close:.2f}",
                f"{r.volume:.5f}",
            ]
        )
    return buffer.getvalue().encode()


def to_parquet(rows: list[Row], path: Path) -> None:
    columns = {"ms": "BIGINT", "symbol": "VARCHAR", "open": "DOUBLE", "high": "DOUBLE",
               "low": "DOUBLE", "close": "DOUBLE", "volume": "DOUBLE"}  # fmt: skip
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE bars (time TIMESTAMPTZ, symbol VARCHAR, open DOUBLE, high DOUBLE,"
            " low DOUBLE, close DOUBLE, volume DOUBLE)"
        )
        # The time goes in as exact epoch milliseconds, read as UTC.
        appender = con.query_appender(
            "INSERT INTO bars SELECT timezone('UTC', epoch_ms(ms)), symbol, open, high, low,"
            " close, volume FROM appender_data",
            columns,
        )
        appender.append_rows(
            (int(r.time.timestamp()) * 1000, SYMBOL, r.open, r.high, r.low, r.close, r.volume)
            for r in rows
        )
        appender.flush()
        con.execute("COPY bars TO ? (FORMAT parquet, COMPRESSION zstd)", [str(path)])


def check(rows: list[Row]) -> None:
    previous = START_PRICE
    for i, r in enumerate(rows):
        ok = 0 < r.low <= min(r.open, r.close) and max(r.open, r.close) <= r.high
        if not (ok and r.open == previous and r.volume > 0):
            raise SystemExit(f"bar {i} is inconsistent: {r}")
        if r.time != START + timedelta(minutes=i):
            raise SystemExit(f"bar {i} has time {r.time}")
        previous = r.close


def plain_sum(values: list[float]) -> float:
    """Left-to-right float addition (the built-in sum() is compensated from Python 3.12)."""
    total = 0.0
    for value in values:
        total += value
    return total


def sma_crossings(closes: list[float], fast: int = 5, slow: int = 20) -> int:
    """How often the fast average crosses the slow one (a tie is not a side)."""
    crossings, side = 0, 0
    for end in range(slow, len(closes) + 1):
        fast_mean = plain_sum(closes[end - fast : end]) / fast
        gap = fast_mean - plain_sum(closes[end - slow : end]) / slow
        now = 1 if gap > 0 else -1 if gap < 0 else 0
        if now and side and now != side:
            crossings += 1
        side = now or side
    return crossings


def summary(rows: list[Row]) -> str:
    closes = [r.close for r in rows]
    returns = [b / a - 1.0 for a, b in pairwise(closes)]
    mean = plain_sum(returns) / len(returns)
    sd = math.sqrt(plain_sum([(x - mean) * (x - mean) for x in returns]) / (len(returns) - 1))
    return (
        f"{len(rows)} bars {rows[0].time:%Y-%m-%dT%H:%MZ} .. {rows[-1].time:%Y-%m-%dT%H:%MZ}, "
        f"low {min(r.low for r in rows):.2f}, high {max(r.high for r in rows):.2f}, "
        f"last close {closes[-1]:.2f}, per-minute return sd {100 * sd:.4f}%, "
        f"SMA 5/20 crossings {sma_crossings(closes)}"
    )


def main() -> int:
    rows = generate()
    check(rows)
    data = to_csv(rows)
    (HERE / f"{STEM}.csv").write_bytes(data)
    to_parquet(rows, HERE / f"{STEM}.parquet")
    digest = hashlib.sha256(data).hexdigest()
    print(f"seed {SEED}: {summary(rows)}")
    print(f"{STEM}.csv sha256 {digest}")
    if digest != EXPECTED_SHA256:
        print(
            f"the CSV differs from EXPECTED_SHA256 {EXPECTED_SHA256}; if the change is "
            "intended, update EXPECTED_SHA256 and README.md",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
