-- Named JSON documents policies read as `data.<name>` (allowlists, tiers, keys): part of the
-- node-visible configuration, so a change bumps the revision like any policy change and
-- reaches every node with it.
CREATE TABLE data_documents (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    document    jsonb NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER data_documents_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON data_documents FOR EACH STATEMENT EXECUTE FUNCTION shoal_bump_revision();
