-- Shoal control plane schema.
--
-- Every change to node-visible configuration (resources, policies, users, credentials) bumps
-- one monotonic revision number, once per transaction, and notifies nodes on the
-- `shoal_config` channel. The bump is done by triggers, so a change made through the admin API,
-- the CLI or by hand in psql follows the same path, and nodes pick it up either by
-- LISTEN/NOTIFY or, if a notification is lost, by polling `config_head`.

-- The current revision: a single row, only ever increased.
CREATE TABLE config_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   bigint  NOT NULL CHECK (revision >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_head (revision) VALUES (0);

-- One row per revision: who changed what.
CREATE TABLE config_revisions (
    revision   bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    summary    text NOT NULL
);

CREATE FUNCTION shoal_guard_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revision <= OLD.revision THEN
        RAISE EXCEPTION 'config revision must increase (current %, attempted %)',
            OLD.revision, NEW.revision
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER config_head_monotonic BEFORE UPDATE ON config_head
    FOR EACH ROW EXECUTE FUNCTION shoal_guard_revision();

-- Bumps the revision at most once per transaction and records who did it. The actor and
-- summary come from transaction-local settings that the control plane sets; a change made by
-- hand is attributed to the database role.
CREATE FUNCTION shoal_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped text := current_setting('shoal.revision', true);
    rev bigint;
BEGIN
    IF bumped IS NOT NULL AND bumped <> '' THEN
        UPDATE config_revisions
           SET summary = summary || '; ' || TG_OP || ' ' || TG_TABLE_NAME
         WHERE revision = bumped::bigint
           AND coalesce(current_setting('shoal.summary', true), '') = '';
        RETURN NULL;
    END IF;
    UPDATE config_head SET revision = revision + 1, updated_at = now() RETURNING revision INTO rev;
    INSERT INTO config_revisions (revision, actor, summary) VALUES (
        rev,
        coalesce(nullif(current_setting('shoal.actor', true), ''), 'sql:' || current_user),
        coalesce(nullif(current_setting('shoal.summary', true), ''), TG_OP || ' ' || TG_TABLE_NAME)
    );
    PERFORM set_config('shoal.revision', rev::text, true);
    PERFORM pg_notify('shoal_config', rev::text);
    RETURN NULL;
END $$;

CREATE TABLE resources (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    kind        text NOT NULL CHECK (kind IN ('s3', 'http')),
    -- Kind-specific settings (upstream endpoint, addressing, key header); validated by the
    -- control plane before writes and by every node at load.
    spec        jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled     boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    rego        text NOT NULL,
    -- eventual: decide locally from gossiped counts; strict: the key's owner decides.
    enforcement text NOT NULL DEFAULT 'eventual' CHECK (enforcement IN ('eventual', 'strict')),
    enabled     boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9@._-]{0,127}$'),
    enabled     boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- How a user proves who they are to the data plane.
--   api_key: `key_id` is the public part of the key; `secret_sha256` the SHA-256 of the secret
--            part (the node only needs to compare, never to read it back).
--   s3:      `key_id` is the AWS access key id; `secret_ciphertext` is the secret access key
--            sealed with AES-256-GCM under the secrets key (nonce || ciphertext), because
--            verifying a SigV4 signature needs the secret itself.
CREATE TABLE user_credentials (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('api_key', 's3')),
    key_id            text NOT NULL UNIQUE CHECK (key_id ~ '^[A-Za-z0-9_-]{8,128}$'),
    secret_sha256     bytea CHECK (secret_sha256 IS NULL OR length(secret_sha256) = 32),
    secret_ciphertext bytea,
    enabled           boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'api_key' AND secret_sha256 IS NOT NULL AND secret_ciphertext IS NULL)
        OR (kind = 's3' AND secret_ciphertext IS NOT NULL AND secret_sha256 IS NULL))
);
CREATE INDEX user_credentials_user ON user_credentials (user_id);

CREATE TRIGGER resources_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_bump_revision();
CREATE TRIGGER policies_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_bump_revision();
CREATE TRIGGER users_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_bump_revision();
CREATE TRIGGER user_credentials_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_bump_revision();

-- Console and admin API accounts. Not node config: nodes verify logins against this table
-- directly, so changes here do not bump the revision.
CREATE TABLE admins (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9@._-]{0,63}$'),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Admin sessions live in the database so that a session survives a switch between nodes
-- behind the load balancer. Only the SHA-256 of the token is stored.
CREATE TABLE admin_sessions (
    token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    admin_id     bigint NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- Audit log: admin actions and (later) data-plane decisions. `event_id` is generated where
-- the event happens, so a node flushing its disk spool after an outage can retry safely:
-- a line already stored is skipped, never duplicated.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    at         timestamptz NOT NULL,
    node       text NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL DEFAULT '',
    outcome    text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
