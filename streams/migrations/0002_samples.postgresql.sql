-- Time series on plain PostgreSQL: daily range partitions (created ahead and dropped by
-- anjian), and a per-minute rollup table of GOOD samples that anjian keeps up to date.

CREATE TABLE samples (
    ts      timestamptz NOT NULL,
    point   integer NOT NULL,
    value   double precision,
    quality smallint NOT NULL
) PARTITION BY RANGE (ts);

CREATE INDEX samples_ts_brin ON samples USING brin (ts);
CREATE INDEX samples_point_ts ON samples (point, ts);

CREATE TABLE samples_1m (
    bucket timestamptz NOT NULL,
    point  integer NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    avg    double precision NOT NULL,
    last   double precision NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (point, bucket)
);
CREATE INDEX samples_1m_bucket_brin ON samples_1m USING brin (bucket);

-- Rollups are complete before the watermark; series read raw samples from it on.
CREATE TABLE rollup_state (
    name      text PRIMARY KEY,
    watermark timestamptz NOT NULL
);

CREATE TABLE latest_values (
    point   integer PRIMARY KEY,
    ts      timestamptz NOT NULL,
    value   double precision,
    quality smallint NOT NULL
);
