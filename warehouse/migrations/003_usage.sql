-- Usage as ingested, and usage priced by the rating engine. Money is Decimal(18, 6), never a float.
--
-- usage_records: ReplacingMergeTree on the record id (a replayed record collapses into one row).
-- rated_usage: a rerating re-emits the same id with a higher `rating_version`;
-- ReplacingMergeTree(rating_version) keeps the highest one. The sorting key (account, start, id) and
-- the partition (month of start) come from the usage record and never change on rerating, so every
-- version of a record lands in the same partition and key and can collapse. Until parts merge,
-- billing and any exact sum read with FINAL (or argMax(amount, rating_version) GROUP BY id).
-- quantity is Decimal(38, 9): wide enough for byte counts, exact to 9 decimals like the rating units.

CREATE TABLE IF NOT EXISTS usage_records
(
    id String,
    account String,
    service LowCardinality(String),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    bytes_up UInt64,
    bytes_down UInt64,
    duration_s Nullable(UInt64),
    destination String,
    event_type LowCardinality(String),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(start)
ORDER BY (account, start, id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS rated_usage
(
    id String,
    account String,
    service LowCardinality(String),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    quantity Decimal(38, 9),
    unit LowCardinality(String),
    amount Decimal(18, 6),
    currency LowCardinality(String),
    plan LowCardinality(String),
    plan_version UInt32,
    rating_version UInt32,
    rated_at DateTime64(3, 'UTC'),
    breakdown String
)
ENGINE = ReplacingMergeTree(rating_version)
PARTITION BY toYYYYMM(start)
ORDER BY (account, start, id)
SETTINGS non_replicated_deduplication_window = 1000;
