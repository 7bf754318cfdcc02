-- Alerts, dead letters and the pipeline's own metrics.
--
-- alerts and dead_letters are ReplacingMergeTree on their record id, like every record table: a
-- replay collapses on merge, exact counts use FINAL. An alert's `id` names one state change; the
-- current state of an alert is argMax(status, updated) GROUP BY fingerprint.
-- pipeline_metrics holds samples the workers write about themselves (no record id, append-only);
-- they are kept 90 days.

CREATE TABLE IF NOT EXISTS alerts
(
    id String,
    fingerprint String,
    name LowCardinality(String),
    status LowCardinality(String),
    severity LowCardinality(String),
    device LowCardinality(String),
    if_index Nullable(UInt32),
    summary String,
    starts DateTime64(3, 'UTC'),
    ends Nullable(DateTime64(3, 'UTC')),
    updated DateTime64(3, 'UTC'),
    labels Map(LowCardinality(String), String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(updated)
ORDER BY (fingerprint, updated, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS dead_letters
(
    id String,
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    stage LowCardinality(String),
    reason String,
    payload String,
    payload_encoding LowCardinality(String),
    ts DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (stage, topic, ts, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS pipeline_metrics
(
    ts DateTime64(3, 'UTC'),
    worker LowCardinality(String),
    stage LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    labels Map(LowCardinality(String), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (metric, stage, worker, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY;
