-- Exactly-once ingest: each sample writer commits the sequence number of the batch it wrote
-- in the same transaction as the rows, so a replayed spool file at or below it is skipped.

CREATE TABLE ingest_state (
    writer     text PRIMARY KEY,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
