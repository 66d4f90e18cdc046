-- A real-time continuous aggregate of doubtful readings (streams.quality.DOUBTFUL:
-- 1 UNCERTAIN, 5 OUT_OF_RANGE) per minute, beside samples_1m of GOOD samples, which stays as it
-- is. A trend draws both and marks the minutes that hold doubtful ones: a gas detector
-- saturated in a large leak reads above its range, and that is when the trend matters most.

CREATE MATERIALIZED VIEW samples_1m_doubtful
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       point,
       min(value) AS min,
       max(value) AS max,
       avg(value) AS avg,
       last(value, ts) AS last,
       count(value) AS count
FROM samples
WHERE quality IN (1, 5) AND value IS NOT NULL
GROUP BY bucket, point
WITH NO DATA;

-- As samples_1m's: readings still stored are materialised by the policy or read in real time.
SELECT add_continuous_aggregate_policy('samples_1m_doubtful',
    start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute');
