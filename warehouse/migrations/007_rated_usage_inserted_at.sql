-- When each rated row reached the warehouse (issue: rating engine, real-time path): the freshness of
-- rated usage for billing dashboards, and what `ossbss bench usage_rated_latency` measures
-- (inserted_at - end of the usage record, p50/p99).
--
-- Rows written before this migration get the Unix epoch (unknown): without the MATERIALIZE step a part
-- lacking the column would compute the default on every read, showing the time of the query.
ALTER TABLE rated_usage ADD COLUMN IF NOT EXISTS inserted_at DateTime64(3, 'UTC') DEFAULT toDateTime64(0, 3, 'UTC') AFTER breakdown;
ALTER TABLE rated_usage MATERIALIZE COLUMN inserted_at SETTINGS mutations_sync = 1;
ALTER TABLE rated_usage MODIFY COLUMN inserted_at DateTime64(3, 'UTC') DEFAULT now64(3);
