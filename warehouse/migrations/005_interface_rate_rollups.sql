-- Roll-ups of interface_rates_1m into 5-minute and 1-hour windows, for dashboards over long ranges.
--
-- Why refreshable views and not insert-triggered ones: interface_rates_1m is a ReplacingMergeTree
-- where a window can be re-emitted with a higher revision. An insert-triggered materialized view
-- sees each revision as new rows, so sums and averages would count a re-emitted minute twice; making
-- that exact needs per-minute states (argMax by revision for each minute) inside every roll-up row,
-- which is no smaller than the 1-minute data it summarises. Instead each roll-up is a refreshable
-- materialized view (APPEND) that recomputes whole 5m/1h windows from `interface_rates_1m FINAL`
-- (every minute at its highest revision), but only for the windows that received rows since its
-- last refresh: `inserted_at` of the 1-minute rows is compared with the newest `refreshed_at` already
-- in the roll-up (read from a tiny aggregate projection, minus a 5-minute margin for inserts that
-- were in flight). An empty roll-up therefore rebuilds everything, and a restart after downtime
-- catches up on its own. A recomputed window is appended as a new row; the roll-up tables are
-- ReplacingMergeTree(refreshed_at), so the latest computation wins: read them with FINAL.
--
-- Columns: averages are the mean of the 1-minute averages (windows cover equal time); *_max the
-- maximum; *_avg_p95 the 95th percentile of the 1-minute averages inside the window; *_p95_max the
-- largest 1-minute p95 (an upper bound of the window's own p95, which 1-minute rows cannot give
-- exactly); counters are summed; `windows` counts the 1-minute windows present. The inner columns
-- are renamed m_* because ClickHouse aliases are query-wide: `avg(in_bps_avg) AS in_bps_avg` would
-- otherwise capture the `in_bps_avg` inside quantileExact.
-- The views run inside the engine (the process that owns chDB, or the server); warehouse/rollups.py
-- can trigger a refresh at once.

CREATE TABLE IF NOT EXISTS interface_rates_5m
(
    device LowCardinality(String),
    if_index UInt32,
    window_start DateTime64(3, 'UTC'),
    if_name LowCardinality(String),
    windows UInt16,
    samples UInt64,
    in_bps_avg Float64,
    in_bps_max Float64,
    in_bps_avg_p95 Float64,
    in_bps_p95_max Float64,
    out_bps_avg Float64,
    out_bps_max Float64,
    out_bps_avg_p95 Float64,
    out_bps_p95_max Float64,
    in_util_pct_avg Nullable(Float64),
    out_util_pct_avg Nullable(Float64),
    in_errors UInt64,
    out_errors UInt64,
    in_discards UInt64,
    out_discards UInt64,
    speed_bps Nullable(UInt64),
    refreshed_at DateTime64(3, 'UTC'),
    PROJECTION refresh_watermark (SELECT max(refreshed_at))
)
ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (device, if_index, window_start)
SETTINGS deduplicate_merge_projection_mode = 'rebuild';

CREATE TABLE IF NOT EXISTS interface_rates_1h AS interface_rates_5m;

CREATE MATERIALIZED VIEW IF NOT EXISTS interface_rates_5m_refresh
REFRESH EVERY 1 MINUTE APPEND TO interface_rates_5m
AS
WITH (SELECT max(refreshed_at) FROM interface_rates_5m) - INTERVAL 5 MINUTE AS since
SELECT
    device,
    if_index,
    bucket AS window_start,
    argMax(m_if_name, minute_start) AS if_name,
    toUInt16(count()) AS windows,
    sum(m_samples) AS samples,
    avg(m_in_bps_avg) AS in_bps_avg,
    max(m_in_bps_max) AS in_bps_max,
    quantileExact(0.95)(m_in_bps_avg) AS in_bps_avg_p95,
    max(m_in_bps_p95) AS in_bps_p95_max,
    avg(m_out_bps_avg) AS out_bps_avg,
    max(m_out_bps_max) AS out_bps_max,
    quantileExact(0.95)(m_out_bps_avg) AS out_bps_avg_p95,
    max(m_out_bps_p95) AS out_bps_p95_max,
    avg(m_in_util_pct_avg) AS in_util_pct_avg,
    avg(m_out_util_pct_avg) AS out_util_pct_avg,
    sum(m_in_errors) AS in_errors,
    sum(m_out_errors) AS out_errors,
    sum(m_in_discards) AS in_discards,
    sum(m_out_discards) AS out_discards,
    argMax(m_speed_bps, minute_start) AS speed_bps,
    now64(3, 'UTC') AS refreshed_at
FROM
(
    SELECT
        device,
        if_index,
        window_start AS minute_start,
        toStartOfInterval(window_start, INTERVAL 5 MINUTE) AS bucket,
        if_name AS m_if_name,
        samples AS m_samples,
        in_bps_avg AS m_in_bps_avg,
        in_bps_max AS m_in_bps_max,
        in_bps_p95 AS m_in_bps_p95,
        out_bps_avg AS m_out_bps_avg,
        out_bps_max AS m_out_bps_max,
        out_bps_p95 AS m_out_bps_p95,
        in_util_pct_avg AS m_in_util_pct_avg,
        out_util_pct_avg AS m_out_util_pct_avg,
        in_errors AS m_in_errors,
        out_errors AS m_out_errors,
        in_discards AS m_in_discards,
        out_discards AS m_out_discards,
        speed_bps AS m_speed_bps
    FROM interface_rates_1m FINAL
    WHERE (device, if_index, toStartOfInterval(window_start, INTERVAL 5 MINUTE)) IN (
        SELECT DISTINCT device, if_index, toStartOfInterval(window_start, INTERVAL 5 MINUTE)
        FROM interface_rates_1m
        WHERE inserted_at >= since
    )
)
GROUP BY device, if_index, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS interface_rates_1h_refresh
REFRESH EVERY 5 MINUTE APPEND TO interface_rates_1h
AS
WITH (SELECT max(refreshed_at) FROM interface_rates_1h) - INTERVAL 5 MINUTE AS since
SELECT
    device,
    if_index,
    bucket AS window_start,
    argMax(m_if_name, minute_start) AS if_name,
    toUInt16(count()) AS windows,
    sum(m_samples) AS samples,
    avg(m_in_bps_avg) AS in_bps_avg,
    max(m_in_bps_max) AS in_bps_max,
    quantileExact(0.95)(m_in_bps_avg) AS in_bps_avg_p95,
    max(m_in_bps_p95) AS in_bps_p95_max,
    avg(m_out_bps_avg) AS out_bps_avg,
    max(m_out_bps_max) AS out_bps_max,
    quantileExact(0.95)(m_out_bps_avg) AS out_bps_avg_p95,
    max(m_out_bps_p95) AS out_bps_p95_max,
    avg(m_in_util_pct_avg) AS in_util_pct_avg,
    avg(m_out_util_pct_avg) AS out_util_pct_avg,
    sum(m_in_errors) AS in_errors,
    sum(m_out_errors) AS out_errors,
    sum(m_in_discards) AS in_discards,
    sum(m_out_discards) AS out_discards,
    argMax(m_speed_bps, minute_start) AS speed_bps,
    now64(3, 'UTC') AS refreshed_at
FROM
(
    SELECT
        device,
        if_index,
        window_start AS minute_start,
        toStartOfHour(window_start) AS bucket,
        if_name AS m_if_name,
        samples AS m_samples,
        in_bps_avg AS m_in_bps_avg,
        in_bps_max AS m_in_bps_max,
        in_bps_p95 AS m_in_bps_p95,
        out_bps_avg AS m_out_bps_avg,
        out_bps_max AS m_out_bps_max,
        out_bps_p95 AS m_out_bps_p95,
        in_util_pct_avg AS m_in_util_pct_avg,
        out_util_pct_avg AS m_out_util_pct_avg,
        in_errors AS m_in_errors,
        out_errors AS m_out_errors,
        in_discards AS m_in_discards,
        out_discards AS m_out_discards,
        speed_bps AS m_speed_bps
    FROM interface_rates_1m FINAL
    WHERE (device, if_index, toStartOfHour(window_start)) IN (
        SELECT DISTINCT device, if_index, toStartOfHour(window_start)
        FROM interface_rates_1m
        WHERE inserted_at >= since
    )
)
GROUP BY device, if_index, bucket;
