-- Per-interface rates over 1-minute event-time windows, as emitted by the streams app.
--
-- A window can be re-emitted with a higher `revision` when late samples arrive within the allowed
-- lateness. ReplacingMergeTree(revision) keeps, per (device, if_index, window_start) (the parts of the
-- record id), the row with the highest revision once parts merge; until then several revisions may
-- coexist, so exact queries read with FINAL or argMax(col, revision). `inserted_at` records when a row
-- arrived: the roll-ups (005) recompute only the windows that received rows since their last refresh,
-- and the minmax index lets that lookup skip old parts.

CREATE TABLE IF NOT EXISTS interface_rates_1m
(
    id String,
    device LowCardinality(String),
    if_index UInt32,
    window_start DateTime64(3, 'UTC'),
    if_name LowCardinality(String),
    samples UInt32,
    in_bps_avg Float64,
    in_bps_max Float64,
    in_bps_p95 Float64,
    out_bps_avg Float64,
    out_bps_max Float64,
    out_bps_p95 Float64,
    in_util_pct_avg Nullable(Float64),
    out_util_pct_avg Nullable(Float64),
    in_errors UInt64,
    out_errors UInt64,
    in_discards UInt64,
    out_discards UInt64,
    speed_bps Nullable(UInt64),
    revision UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC'),
    INDEX inserted_at_minmax inserted_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (device, if_index, window_start)
SETTINGS non_replicated_deduplication_window = 1000;
