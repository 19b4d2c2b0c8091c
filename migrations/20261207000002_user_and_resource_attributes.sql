-- What policies read about a user besides its name (`input.user.{email, type, groups,
-- attributes}`) and about a resource besides its name and kind (`input.resource.{environment,
-- tags}`). Every existing user is a human in no group; every resource has no environment.
ALTER TABLE users
    ADD COLUMN email text,
    ADD COLUMN type text NOT NULL DEFAULT 'human' CHECK (type IN ('human', 'machine')),
    ADD COLUMN groups text[] NOT NULL DEFAULT '{}',
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object');

ALTER TABLE resources
    ADD COLUMN environment text,
    ADD COLUMN tags jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object');
