-- GET /api/profiles sorts by created, updated or email (either direction) with the profile id as the
-- tie-break, and pages by keyset on (that column, id): each needs an index in that order, read
-- forwards or backwards. Incremental readers page by updated; (updated, id) supersedes (updated).
CREATE INDEX klaviyo_profiles_created_id_idx ON klaviyo_profiles (created, id);
CREATE INDEX klaviyo_profiles_updated_id_idx ON klaviyo_profiles (updated, id);
CREATE INDEX klaviyo_profiles_email_id_idx ON klaviyo_profiles (email, id);
DROP INDEX klaviyo_profiles_updated_idx;

-- Klaviyo identifies a profile by anonymous_id and by _kx (its web tracking's exchange id) as well
-- as by id, email, phone number and external id: Create Event and GET /api/profiles?filter=
-- equals(_kx,"...") look profiles up by them. _kx is opaque (Klaviyo encrypts it); it is kept as given.
ALTER TABLE klaviyo_profiles ADD COLUMN kx text;
CREATE INDEX klaviyo_profiles_kx_idx ON klaviyo_profiles (kx) WHERE kx IS NOT NULL;
CREATE INDEX klaviyo_profiles_anonymous_id_idx ON klaviyo_profiles (anonymous_id) WHERE anonymous_id IS NOT NULL;
