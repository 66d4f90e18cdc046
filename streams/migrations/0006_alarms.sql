-- Alarms (ISA-18.2): one row per configured alarm, i.e. per (point, condition), holding its
-- current state, and every transition in alarm_events. `record` is the state machine's full
-- record, from which a restart restores the alarm exactly (shelving expiry included).

CREATE TABLE alarms (
    id         bigserial PRIMARY KEY,
    point      integer NOT NULL REFERENCES points (id),
    condition  smallint NOT NULL,
    state      text NOT NULL,
    active     boolean NOT NULL,
    priority   smallint NOT NULL,
    raised_at  timestamptz,
    updated_at timestamptz NOT NULL,
    record     jsonb NOT NULL,
    UNIQUE (point, condition)
);
CREATE INDEX alarms_open ON alarms (state) WHERE state <> 'normal';

CREATE TABLE alarm_events (
    id         bigserial PRIMARY KEY,
    alarm      bigint NOT NULL REFERENCES alarms (id),
    point      integer NOT NULL,
    condition  smallint NOT NULL,
    kind       text NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    ts         timestamptz NOT NULL,
    value      double precision,
    priority   smallint NOT NULL,
    who        text,
    why        text,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_ts ON alarm_events (ts);
CREATE INDEX alarm_events_alarm ON alarm_events (alarm, ts);

-- Early warnings (预警) and every step of their disposal.
CREATE TABLE warnings (
    id            bigserial PRIMARY KEY,
    enterprise    text NOT NULL,
    hazard_source text,
    level         text NOT NULL,
    state         text NOT NULL,
    dedupe_key    text NOT NULL,
    issued_at     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    record        jsonb NOT NULL
);
CREATE UNIQUE INDEX warnings_live_key ON warnings (dedupe_key)
    WHERE state IN ('issued', 'pushed', 'signed', 'feedback');
CREATE INDEX warnings_enterprise ON warnings (enterprise, issued_at);
