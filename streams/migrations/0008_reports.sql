-- What enterprises report for the early-warning model (DOMAIN.md §4.2 (d)): special-work
-- permits (特殊作业, GB 30871) on their hazard sources, and the daily safety commitment
-- (安全风险研判与承诺公告) signed by the main responsible person, every submission kept.

CREATE TABLE special_work (
    id            bigserial PRIMARY KEY,
    enterprise    text NOT NULL,
    hazard_source text NOT NULL,
    work_type     text NOT NULL,
    permit_no     text NOT NULL,
    started_at    timestamptz NOT NULL,
    planned_end   timestamptz NOT NULL,
    location      text NOT NULL,
    supervisor    text NOT NULL,
    reported_by   text NOT NULL,
    reported_at   timestamptz NOT NULL,
    ended_at      timestamptz,
    ended_by      text,
    end_note      text NOT NULL DEFAULT '',
    UNIQUE (enterprise, permit_no),
    CHECK (planned_end > started_at)
);
CREATE INDEX special_work_ongoing ON special_work (enterprise, hazard_source)
    WHERE ended_at IS NULL;
CREATE INDEX special_work_started ON special_work (enterprise, started_at);

-- One row per submission: a resubmission the same day is the next revision, and the latest
-- revision is the commitment in force.
CREATE TABLE safety_commitments (
    enterprise        text NOT NULL,
    day               date NOT NULL,
    revision          integer NOT NULL,
    risk_level        text NOT NULL,
    production_state  text NOT NULL,
    units_running     integer NOT NULL CHECK (units_running >= 0),
    units_stopped     integer NOT NULL CHECK (units_stopped >= 0),
    units_maintenance integer NOT NULL CHECK (units_maintenance >= 0),
    special_work      jsonb NOT NULL,
    hot_work_grade1   integer NOT NULL CHECK (hot_work_grade1 >= 0),
    hot_work_special  integer NOT NULL CHECK (hot_work_special >= 0),
    sources_safe      jsonb NOT NULL,
    note              text NOT NULL DEFAULT '',
    signed_by         text NOT NULL,
    submitted_by      text NOT NULL,
    submitted_at      timestamptz NOT NULL,
    PRIMARY KEY (enterprise, day, revision)
);
