-- The audit log (安全审计, 等保 8.1.4.3): append-only, each row hash-chained to the one before.
-- The chain is computed here, in the INSERT trigger, so no writer can put in a row out of chain.

-- account_id names no foreign key: an audit record outlives the account it speaks of.
-- seq is assigned by the trigger (head + 1 under the chain lock), never by a sequence: a
-- sequence loses numbers on rollback, and a lost number would read as a deleted record.
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    account_id integer,
    username   text,
    role       text,
    source     text,
    action     text NOT NULL CHECK (action <> ''),
    target     text,
    result     text NOT NULL CHECK (result <> ''),
    detail     jsonb CHECK (detail IS NULL OR jsonb_typeof(detail) = 'object'),
    prev_hash  bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_username ON audit_log (username, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- Where the chain starts after a prune: the last removed record and its hash. Written only by
-- audit_prune(); verification expects the first remaining record to follow it.
CREATE TABLE audit_anchor (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_seq bigint NOT NULL,
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    prune_seq   bigint NOT NULL  -- the audit.prune record that removed them
);

-- Canonical JSON: sorted keys (code-point order = UTF-8 byte order = COLLATE "C"), no
-- whitespace, non-ASCII as is. Strings and numbers are jsonb's own text, which escapes exactly
-- as Python's json.dumps(ensure_ascii=False) does; web.audit.canonical_json is its twin.
CREATE FUNCTION audit_canonical_json(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        RETURN '{' || coalesce((
            SELECT string_agg(to_jsonb(e.key)::text || ':' || audit_canonical_json(e.value), ','
                              ORDER BY e.key COLLATE "C")
            FROM jsonb_each(v) AS e), '') || '}';
    WHEN 'array' THEN
        RETURN '[' || coalesce((
            SELECT string_agg(audit_canonical_json(a.value), ',' ORDER BY a.n)
            FROM jsonb_array_elements(v) WITH ORDINALITY AS a(value, n)), '') || ']';
    ELSE
        RETURN v::text;
    END CASE;
END $$;

-- hash = SHA-256(prev_hash || canonical JSON of the row's fields, UTF-8).
CREATE FUNCTION audit_row_hash(
    prev_hash bytea, seq bigint, at timestamptz, account_id integer, username text, role text,
    source text, action text, target text, result text, detail jsonb
) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT sha256(prev_hash || convert_to(audit_canonical_json(jsonb_build_object(
        'seq', seq,
        'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'account_id', account_id,
        'username', username,
        'role', role,
        'source', source,
        'action', action,
        'target', target,
        'result', result,
        'detail', detail)), 'UTF8'))
$$;

-- Appends are serialised by a transaction-scoped advisory lock (key "anjian" + 0x00A0; the
-- store's keys are 0x0001..): the head read after taking it is the true head, so two writers
-- cannot fork the chain, and a rolled-back append leaves neither a row nor a gap.
CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(7020665869955891360);
    SELECT l.seq, l.hash INTO head_seq, head_hash FROM audit_log AS l ORDER BY l.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        SELECT a.through_seq, a.hash INTO head_seq, head_hash FROM audit_anchor AS a;
    END IF;
    NEW.seq := coalesce(head_seq, 0) + 1;
    NEW.prev_hash := coalesce(head_hash, decode(repeat('00', 32), 'hex'));  -- the genesis
    -- The database's clock, read under the lock: time order is chain order.
    NEW.at := clock_timestamp();
    -- One spelling of "nothing", so a CSV export's empty cell reads back unambiguously.
    NEW.username := nullif(NEW.username, '');
    NEW.role := nullif(NEW.role, '');
    NEW.source := nullif(NEW.source, '');
    NEW.target := nullif(NEW.target, '');
    IF jsonb_typeof(NEW.detail) = 'null' THEN
        NEW.detail := NULL;
    END IF;
    NEW.hash := audit_row_hash(NEW.prev_hash, NEW.seq, NEW.at, NEW.account_id, NEW.username,
                               NEW.role, NEW.source, NEW.action, NEW.target, NEW.result,
                               NEW.detail);
    RETURN NEW;
END $$;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('anjian.audit_prune', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % is refused (records older than the retention '
                    'period are removed only by audit_prune())', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Retention (网络安全法 Art. 21: at least 6 months). Removes the oldest records up to the last
-- one written before `before`, keeps their last hash as the anchor the chain now starts from,
-- and records itself in the chain. Returns the number of records removed.
CREATE FUNCTION audit_prune(before timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    through  bigint;
    anchor   bytea;
    removed  bigint := 0;
    prune    bigint;
BEGIN
    IF before IS NULL OR before > now() - interval '180 days' THEN
        RAISE EXCEPTION 'audit_prune(%) refused: audit records are kept at least 180 days, so '
                        'the cut-off must be no later than %', before, now() - interval '180 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7020665869955891360);
    -- Only a prefix of the chain goes: everything before the first record at or after `before`.
    SELECT min(seq) - 1 INTO through FROM audit_log WHERE at >= before;
    IF through IS NULL THEN
        SELECT max(seq) INTO through FROM audit_log;
    END IF;
    SELECT hash INTO anchor FROM audit_log WHERE seq = through;
    IF anchor IS NOT NULL THEN
        PERFORM set_config('anjian.audit_prune', 'on', true);
        DELETE FROM audit_log WHERE seq <= through;
        GET DIAGNOSTICS removed = ROW_COUNT;
        PERFORM set_config('anjian.audit_prune', '', true);
    END IF;
    IF removed > 0 THEN
        -- Before the prune record goes in: with every record gone, its trigger chains to this.
        INSERT INTO audit_anchor (through_seq, hash, prune_seq) VALUES (through, anchor, 0)
        ON CONFLICT (singleton) DO UPDATE
            SET through_seq = excluded.through_seq, hash = excluded.hash, prune_seq = 0;
    END IF;
    INSERT INTO audit_log (username, source, action, target, result, detail)
    VALUES (session_user, 'database', 'audit.prune', 'audit_log', 'ok',
            jsonb_build_object(
                'before', to_char(before AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'removed', removed,
                'through_seq', CASE WHEN removed > 0 THEN through END,
                'anchor', CASE WHEN removed > 0 THEN encode(anchor, 'hex') END))
    RETURNING seq INTO prune;
    IF removed > 0 THEN
        UPDATE audit_anchor SET prune_seq = prune;
    END IF;
    RETURN removed;
END $$;

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE ALL ON audit_anchor FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_prune(timestamptz) FROM PUBLIC;

-- Pin the search path of the functions that touch the tables (pg_temp last, so a temporary
-- table cannot stand in for audit_log), to the schema this migration runs in.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION audit_prune(timestamptz) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION audit_log_chain() SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION audit_row_hash(bytea, bigint, timestamptz, integer, text, '
                   'text, text, text, text, text, jsonb) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION audit_canonical_json(jsonb) SET search_path = %I, pg_temp',
                   current_schema());
END $$;

-- The application's runtime role owns nothing: it may append and read the log, read the anchor
-- and prune through the function, no more. Roles are cluster-wide, so it may exist already (a
-- second database on the server); a migration user without CREATEROLE skips it with a notice.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anjian_app') THEN
        CREATE ROLE anjian_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'role anjian_app not created (no CREATEROLE): create it and re-grant';
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'anjian_app') THEN
        GRANT INSERT, SELECT ON audit_log TO anjian_app;
        GRANT SELECT ON audit_anchor TO anjian_app;
        GRANT EXECUTE ON FUNCTION audit_prune(timestamptz) TO anjian_app;
    END IF;
END $$;
