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
