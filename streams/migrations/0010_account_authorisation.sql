-- Separation of duties (三员): the system administrator creates accounts and issues one-time
-- passwords, the security administrator authorises. A business account created or given a new
-- password by the system administrator signs in only once the security administrator has
-- authorised it, so neither administrator alone holds a working business credential.
ALTER TABLE accounts ADD COLUMN authorised boolean NOT NULL DEFAULT true;
