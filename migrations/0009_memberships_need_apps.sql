-- A membership needs an existing app. A membership in an app nobody had registered let
-- its holder register that app with defaults of their choosing; memberships like that
-- grant nothing else (there is nothing to see in an app that does not exist), so they
-- are removed before the foreign key is added. Apps are never deleted through the API;
-- should one be deleted by hand, its memberships go with it.

DELETE FROM principal_apps pa
WHERE NOT EXISTS (SELECT 1 FROM apps a WHERE a.app_id = pa.app_id);

ALTER TABLE principal_apps
    ADD CONSTRAINT principal_apps_app_id_fkey
    FOREIGN KEY (app_id) REFERENCES apps (app_id) ON DELETE CASCADE;
