-- dead_letters keyed by its id alone (stage, topic, id), as every other record table is: a dead letter's id
-- is stable across replays (the input's topic/partition/offset and the stage), but its ts is when it was
-- written, so with ts in the sorting key a replayed refusal (a worker restarted, or sought back after a
-- rebalance) stayed a second row under FINAL, and counts of dead letters (the dashboards', `ossbss up`'s
-- "rated + dead-lettered == produced") counted it twice. The table is rebuilt with the new key (taking
-- the old one's columns), its rows copied, and the two swapped: EXCHANGE TABLES is one atomic step on
-- Atomic databases, the default.
--
-- Partitions stay monthly by ts: a refusal replayed across the turn of a month stays two rows.
CREATE TABLE IF NOT EXISTS dead_letters_by_id AS dead_letters
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (stage, topic, id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO dead_letters_by_id SELECT * FROM dead_letters;

EXCHANGE TABLES dead_letters AND dead_letters_by_id;

DROP TABLE IF EXISTS dead_letters_by_id;
