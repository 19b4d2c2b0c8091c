-- What the data plane does with a policy while its node cannot reach every cluster member:
-- decide from the counts it has (`local`, the default: today's behaviour), refuse every request
-- the policy governs (`deny`: fail closed), or read the counts scaled by members / reachable
-- members so the sides of a split together stay within the limit (`share`).
ALTER TABLE policies
    ADD COLUMN on_unreachable text NOT NULL DEFAULT 'local'
        CHECK (on_unreachable IN ('local', 'deny', 'share'));
