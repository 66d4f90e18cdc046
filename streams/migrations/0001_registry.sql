-- The monitored tree from the configuration file: regions, enterprises, hazard sources,
-- devices, points and cameras. Rows are keyed by their codes; ids never change once given.

CREATE TABLE regions (
    code     text PRIMARY KEY,
    province text NOT NULL,
    city     text NOT NULL DEFAULT ''
);

CREATE TABLE enterprises (
    id         serial PRIMARY KEY,
    code       text NOT NULL UNIQUE,
    name       text NOT NULL,
    region     text NOT NULL,
    industry   text NOT NULL DEFAULT '',
    address    text NOT NULL DEFAULT '',
    lon        double precision,
    lat        double precision,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hazard_sources (
    id            serial PRIMARY KEY,
    enterprise_id integer NOT NULL REFERENCES enterprises (id),
    code          text NOT NULL,
    name          text NOT NULL,
    unit_type     text NOT NULL DEFAULT 'storage',
    grade         smallint,
    lon           double precision,
    lat           double precision,
    UNIQUE (enterprise_id, code)
);

CREATE TABLE devices (
    id               serial PRIMARY KEY,
    enterprise_id    integer NOT NULL REFERENCES enterprises (id),
    code             text NOT NULL,
    name             text NOT NULL DEFAULT '',
    protocol         text NOT NULL,
    hazard_source_id integer REFERENCES hazard_sources (id),
    period_s         double precision NOT NULL,
    UNIQUE (enterprise_id, code)
);

-- points.id is the int4 point id carried by every sample.
CREATE TABLE points (
    id               serial PRIMARY KEY,
    enterprise_id    integer NOT NULL REFERENCES enterprises (id),
    device_id        integer NOT NULL REFERENCES devices (id),
    hazard_source_id integer REFERENCES hazard_sources (id),
    code             text NOT NULL,
    name             text NOT NULL,
    unit             text NOT NULL DEFAULT '',
    kind             text NOT NULL DEFAULT '',
    gas              text,
    range_lo         double precision,
    range_hi         double precision,
    limits           jsonb NOT NULL DEFAULT '{}',
    retired          boolean NOT NULL DEFAULT false,
    UNIQUE (enterprise_id, code)
);

CREATE TABLE cameras (
    id               serial PRIMARY KEY,
    enterprise_id    integer NOT NULL REFERENCES enterprises (id),
    code             text NOT NULL,
    name             text NOT NULL,
    url              text NOT NULL,
    hazard_source_id integer REFERENCES hazard_sources (id),
    points           integer[] NOT NULL DEFAULT '{}',
    lon              double precision,
    lat              double precision,
    UNIQUE (enterprise_id, code)
);

CREATE INDEX points_device ON points (device_id);
