-- What the data plane does when a policy fails while evaluating a request: refuse the request
-- (`block`, the default: fail closed) or treat the policy as not applying (`allow`).
ALTER TABLE policies
    ADD COLUMN on_error text NOT NULL DEFAULT 'block'
        CHECK (on_error IN ('block', 'allow'));
