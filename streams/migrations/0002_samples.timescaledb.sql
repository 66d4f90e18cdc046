-- Time series on TimescaleDB: a hypertable of 1-day chunks compressed after 7 days, and a
-- real-time continuous aggregate of GOOD samples per minute. Retention is set from settings.

CREATE TABLE samples (
    ts      timestamptz NOT NULL,
    point   integer NOT NULL,
    value   double precision,
    quality smallint NOT NULL
);

SELECT create_hypertable('samples', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false);
CREATE INDEX samples_point_ts ON samples (point, ts DESC);

ALTER TABLE samples SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'point',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('samples', INTERVAL '7 days');

CREATE MATERIALIZED VIEW samples_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       point,
       min(value) AS min,
       max(value) AS max,
       avg(value) AS avg,
       last(value, ts) AS last,
       count(value) AS count
FROM samples
WHERE quality = 0 AND value IS NOT NULL
GROUP BY bucket, point
WITH NO DATA;

-- The refresh window stays well inside raw retention (>= 30 days), so a refresh never
-- materialises a range whose raw chunks were already dropped.
SELECT add_continuous_aggregate_policy('samples_1m',
    start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute');

CREATE TABLE latest_values (
    point   integer PRIMARY KEY,
    ts      timestamptz NOT NULL,
    value   double precision,
    quality smallint NOT NULL
);
