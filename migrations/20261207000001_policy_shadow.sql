-- A policy in shadow mode is evaluated on every request and audited as "would block" with its
-- reason, but never enforced: a limit or a rule is tried on real traffic before it refuses any.
ALTER TABLE policies
    ADD COLUMN shadow boolean NOT NULL DEFAULT false;

-- The audit page's "would have blocked" filter reads lines whose detail names a shadow policy.
CREATE INDEX audit_log_would_block ON audit_log ((detail ? 'would_block'))
    WHERE detail ? 'would_block';
