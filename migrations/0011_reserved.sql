-- Placeholder for the migration number reserved by another branch (0011 unique-by-dimension),
-- so that this branch's 0012 applies in order. Delete this file when merging the real one.
SELECT 1;
