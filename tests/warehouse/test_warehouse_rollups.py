"""Roll-up views on the real engine: 1-minute rates become 5-minute and 1-hour rows, re-emits counted once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from models.records import InterfaceRate
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.rollups import refresh_rollups
from warehouse.rows import columns_for

T0 = (int(time.time()) // 3600 - 3) * 3_600_000  # an hour boundary, three hours ago


def _rate(device: str, minute: int, in_avg: float, revision: int = 1) -> InterfaceRate:
    start = T0 + minute * 60_000
    return InterfaceRate(
        id=InterfaceRate.make_id(device, 1, start),
        device=device,
        if_index=1,
        window_start_ms=start,
        if_name="xe-0/0/1",
        samples=6,
        in_bps_avg=in_avg,
        in_bps_max=in_avg * 2,
        in_bps_p95=in_avg * 1.5,
        out_bps_avg=1.0,
        in_errors=1,
        speed_bps=10**9,
        revision=revision,
    )


def _insert(wh: ChdbWarehouse, rates: list[InterfaceRate]) -> None:
    wh.insert_columns("interface_rates_1m", columns_for("interface_rates_1m", rates))


def test_rollups_produce_5m_and_1h_rows(wh: ChdbWarehouse) -> None:
    # Two devices, ten minutes each: minute m carries an average of 100 * (m + 1) bit/s.
    _insert(wh, [_rate(d, m, 100.0 * (m + 1)) for d in ("r1", "r2") for m in range(10)])
    refresh_rollups(wh)
    rows = wh.query(
        "SELECT device, window_start, windows, samples, in_bps_avg, in_bps_max, in_bps_p95_max, in_errors "
        "FROM interface_rates_5m FINAL WHERE device = 'r1' ORDER BY window_start"
    ).rows
    start = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert [r[1] for r in rows] == [start, start.replace(minute=5)]
    assert rows[0][2:] == [5, 30, 300.0, 1000.0, 750.0, 5]  # minutes 0-4: avg of 100..500
    assert rows[1][2:] == [5, 30, 800.0, 2000.0, 1500.0, 5]  # minutes 5-9: avg of 600..1000
    assert wh.query("SELECT count() FROM interface_rates_5m FINAL").rows[0][0] == 4
    hourly = wh.query(
        "SELECT device, window_start, windows, in_bps_avg, speed_bps FROM interface_rates_1h FINAL ORDER BY device"
    ).rows
    assert hourly == [["r1", start, 10, 550.0, 10**9], ["r2", start, 10, 550.0, 10**9]]


def test_reemitted_window_replaces_its_minute_not_adds_to_it(wh: ChdbWarehouse) -> None:
    _insert(wh, [_rate("r1", m, 100.0) for m in range(5)])
    refresh_rollups(wh)
    before = wh.query("SELECT windows, in_bps_avg FROM interface_rates_5m FINAL").rows
    assert before == [[5, 100.0]]
    # Late data: minute 2 is re-emitted with a higher revision (and a stale replay of revision 1).
    _insert(wh, [_rate("r1", 2, 600.0, revision=2)])
    _insert(wh, [_rate("r1", 2, 100.0, revision=1)])
    refresh_rollups(wh)
    after = wh.query("SELECT windows, samples, in_bps_avg FROM interface_rates_5m FINAL").rows
    assert after == [[5, 30, pytest.approx(200.0)]]  # (4 * 100 + 600) / 5, minute 2 counted once
    hourly = wh.query("SELECT windows, in_bps_avg FROM interface_rates_1h FINAL").rows
    assert hourly == [[5, pytest.approx(200.0)]]


def test_empty_refresh_changes_nothing(wh: ChdbWarehouse) -> None:
    refresh_rollups(wh)
    assert wh.query("SELECT count() FROM interface_rates_5m").rows[0][0] == 0
