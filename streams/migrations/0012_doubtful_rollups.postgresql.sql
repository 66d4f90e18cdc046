-- Minute rollups of doubtful readings (streams.quality.DOUBTFUL: 1 UNCERTAIN, 5 OUT_OF_RANGE),
-- beside those of GOOD samples, which stay as they are. A trend draws both and marks the
-- minutes that hold doubtful ones: a gas detector saturated in a large leak reads above its
-- range, and that is when the trend matters most. Kept up to date by anjian with samples_1m.

CREATE TABLE samples_1m_doubtful (
    bucket timestamptz NOT NULL,
    point  integer NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    avg    double precision NOT NULL,
    last   double precision NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (point, bucket)
);
CREATE INDEX samples_1m_doubtful_bucket_brin ON samples_1m_doubtful USING brin (bucket);

-- Readings already stored are rolled up at the next refresh (its look-back), and by
-- Store.refresh_rollups for older ones.
