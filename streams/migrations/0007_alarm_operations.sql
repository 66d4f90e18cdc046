-- Alarm operations: suppression by design and the hazard sources' operating states, rules set
-- over the API, and what escalation has already sent.

-- The active causes of suppression by design (ISA-18.2), restored at start-up.
CREATE TABLE alarm_suppressions (
    key     text PRIMARY KEY,  -- "source:E1/HS1:maintenance", "firstout:E1/TK101-trip"
    points  integer[] NOT NULL,
    classes text[] NOT NULL,
    reason  text NOT NULL,
    set_by  text NOT NULL,
    since   timestamptz NOT NULL,
    leader  integer  -- first-out groups: the point that alarmed first
);

-- The operating state of each hazard source (运行 / 开停车 / 检维修 / 停用); no row = running.
CREATE TABLE source_states (
    enterprise text NOT NULL,
    source     text NOT NULL,  -- the hazard source's code
    state      text NOT NULL CHECK (state IN ('running', 'startup_shutdown', 'maintenance',
                                              'stopped')),
    since      timestamptz NOT NULL,
    reason     text NOT NULL,
    set_by     text NOT NULL,
    PRIMARY KEY (enterprise, source)
);

-- Alarm rules set over the API: the override of one point, as in the configuration file's
-- [alarms.points."ENTERPRISE/POINT"]; it takes precedence over the file's and outlives restarts.
CREATE TABLE alarm_rules (
    enterprise text NOT NULL,
    point      text NOT NULL,  -- the point's code
    override   jsonb NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL,
    PRIMARY KEY (enterprise, point)
);

-- What escalation has sent for each unacknowledged alarm (alarms.escalation.EscalationState), so
-- a restart does not send a step again. Times in ns: the raise time must match the alarm's.
CREATE TABLE alarm_escalations (
    alarm        bigint PRIMARY KEY REFERENCES alarms (id),
    raised_at_ns bigint NOT NULL,
    attempt      integer NOT NULL,
    level        integer NOT NULL,
    sent_at_ns   bigint NOT NULL
);
