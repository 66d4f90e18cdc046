-- Accounts (one role each, 三员 included), their password history, login sessions and the
-- hashed API tokens of machines. No secret is stored in the clear except TOTP seeds.

CREATE TABLE accounts (
    id                   serial PRIMARY KEY,
    username             text NOT NULL UNIQUE CHECK (username ~ '^[a-z][a-z0-9_.-]{1,31}$'),
    display_name         text NOT NULL DEFAULT '',
    -- One role per account: nobody can hold two administrative roles, nor an admin and a
    -- business role. 'public' is the anonymous visitor, never an account.
    role                 text NOT NULL CHECK (role IN ('duty_officer', 'shift_leader', 'expert',
                             'leader', 'enterprise', 'sysadmin', 'secadmin', 'auditor')),
    enterprise           text REFERENCES enterprises (code),
    password_hash        text NOT NULL,
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    must_change_password boolean NOT NULL DEFAULT false,
    totp_secret          text,
    totp_pending         text,  -- offered by enrolment, active once a code confirms it
    totp_last_step       bigint NOT NULL DEFAULT 0,  -- a code is accepted once (no replay)
    failed_count         integer NOT NULL DEFAULT 0,
    locked_until         timestamptz,
    disabled             boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_login_at        timestamptz,
    -- An enterprise user is bound to exactly one enterprise; nobody else is bound to one.
    CONSTRAINT accounts_enterprise_binding CHECK ((role = 'enterprise') = (enterprise IS NOT NULL))
);

CREATE TABLE password_history (
    account integer NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    hash    text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_history_account ON password_history (account, at DESC);

-- id_hash is SHA-256 of the cookie value: a database reader cannot take over a session.
CREATE TABLE sessions (
    id_hash      bytea PRIMARY KEY,
    account      integer NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_account ON sessions (account);

CREATE TABLE api_tokens (
    id           serial PRIMARY KEY,
    name         text NOT NULL CHECK (name <> ''),
    token_hash   bytea NOT NULL UNIQUE,
    permissions  text[] NOT NULL,
    enterprise   text REFERENCES enterprises (code),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    created_by   integer REFERENCES accounts (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
