-- Device telemetry as collected: interface counter samples and fault events (traps, informs).
--
-- Idempotency: every record carries an id, and a replay after a crash re-inserts records that may
-- already be stored. Both tables are ReplacingMergeTree with the id in the sorting key, so copies of
-- one record collapse into one row when parts merge. Merges happen in the background, at no fixed
-- time: a query that must count exactly uses FINAL (or GROUP BY id). A retried batch is usually
-- dropped at insert time already: the drivers tag each insert with a token hashed from its ids (and
-- versions), and non_replicated_deduplication_window keeps the tokens of the last 1000 inserts, so
-- plain counts stay right in the common retry case too.
--
-- telemetry_samples is partitioned by day so its TTL (default 7 days, changed by warehouse/migrate.py
-- with ALTER TABLE ... MODIFY TTL) drops whole parts instead of rewriting them.

CREATE TABLE IF NOT EXISTS telemetry_samples
(
    id String,
    device LowCardinality(String),
    if_index UInt32,
    ts DateTime64(3, 'UTC'),
    if_name LowCardinality(String),
    in_octets Nullable(UInt64),
    out_octets Nullable(UInt64),
    in_ucast_pkts Nullable(UInt64),
    out_ucast_pkts Nullable(UInt64),
    in_nucast_pkts Nullable(UInt64),
    out_nucast_pkts Nullable(UInt64),
    in_errors Nullable(UInt64),
    out_errors Nullable(UInt64),
    in_discards Nullable(UInt64),
    out_discards Nullable(UInt64),
    speed_bps Nullable(UInt64),
    oper_status Nullable(UInt8),
    counter_bits UInt8,
    uptime_ticks Nullable(UInt64),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (device, if_index, ts, id)
TTL toDateTime(ts) + INTERVAL 7 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS fault_events
(
    id String,
    device LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    trap_oid LowCardinality(String),
    if_index Nullable(UInt32),
    varbinds Map(String, String),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (device, ts, id)
SETTINGS non_replicated_deduplication_window = 1000;
