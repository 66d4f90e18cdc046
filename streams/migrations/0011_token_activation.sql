-- Separation of duties (三员) for machine tokens: the security administrator creates a token
-- and sees its value once; it works only after the system administrator has activated it, so
-- neither administrator alone holds a working business credential. Existing tokens stay active.
ALTER TABLE api_tokens
    ADD COLUMN activated_at timestamptz,
    ADD COLUMN activated_by integer REFERENCES accounts (id) ON DELETE SET NULL;
UPDATE api_tokens SET activated_at = created_at;
