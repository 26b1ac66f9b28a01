-- Placeholder: number 0008 belongs to another branch's migration. Migrations must be numbered without
-- gaps, and this branch's own migration is 0009; delete this file when the branch that owns 0008 is
-- merged (two 0008 files make readMigrations refuse to start, loudly).
SELECT 1;
