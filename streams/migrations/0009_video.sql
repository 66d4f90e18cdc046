-- Video (issue #6): how a camera is pulled, and the evidence saved when an alarm on one of its
-- linked points becomes active (a clip remuxed without re-encoding, and a snapshot).

ALTER TABLE cameras
    ADD COLUMN transport text NOT NULL DEFAULT 'tcp',
    ADD COLUMN position  text NOT NULL DEFAULT '';

CREATE TABLE alarm_media (
    id         bigserial PRIMARY KEY,
    alarm      bigint NOT NULL REFERENCES alarms (id),
    camera     integer NOT NULL REFERENCES cameras (id),
    raised_at  timestamptz NOT NULL,      -- the alarm occurrence the media belongs to
    kind       text NOT NULL CHECK (kind IN ('clip', 'snapshot')),
    path       text NOT NULL,             -- relative to the data directory
    media_type text NOT NULL,
    bytes      bigint NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarm_media_alarm ON alarm_media (alarm, raised_at);
