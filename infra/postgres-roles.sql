-- What the role the Trainyard service runs as may do, when the schema belongs to another role
-- that applies the migrations (`npm run db:migrate`) and the service starts with
-- TRAINYARD_MIGRATE=0. Run it as the schema's owner after creating the service role, and again
-- after every migration (it is idempotent; a new table gets no rights until it is listed here):
--
--   psql "postgres://OWNER@HOST/DB" -v ON_ERROR_STOP=1 -v schema=trainyard -v role=trainyard_app \
--     -f infra/postgres-roles.sql
--
-- The event log is append-only for the service role by privilege, not only by trigger: it may
-- read and append to `events`, never UPDATE, DELETE or TRUNCATE it, and, not owning the table,
-- cannot drop or disable the trigger that refuses those changes to everyone else. Nor may it
-- create objects in the schema or record migrations.

-- Start from nothing, so rights granted by hand earlier do not linger.
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schema" FROM :"role";
REVOKE ALL ON SCHEMA :"schema" FROM :"role";

GRANT USAGE ON SCHEMA :"schema" TO :"role";

-- The log: read and append. Appending takes the next position from its sequence.
GRANT SELECT, INSERT ON :"schema".events TO :"role";
GRANT USAGE ON SEQUENCE :"schema".events_position_seq TO :"role";

-- Read models and trainer output: projections are rewritten in the transaction of each append,
-- refolded from the log when their fold changes, and old logs are pruned.
GRANT SELECT, INSERT, UPDATE, DELETE ON
  :"schema".tasks,
  :"schema".device_holders,
  :"schema".devices,
  :"schema".task_logs,
  :"schema".projection_versions
  TO :"role";

-- What the OpenAI-compatible API keeps beside the tasks (/v1/files and /v1/fine_tuning/jobs):
-- uploaded files are added and deleted, a job's request is recorded once.
GRANT SELECT, INSERT, DELETE ON :"schema".openai_files TO :"role";
GRANT SELECT, INSERT ON :"schema".openai_jobs TO :"role";

-- Instances' leases: each renews its own and marks an expired one taken over.
GRANT SELECT, INSERT, UPDATE ON :"schema".instance_leases TO :"role";
-- Deployments: a projection of their streams in the log, written as the events are appended and
-- refolded (emptied, then written again) with the task projections.
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".deployments TO :"role";

-- Webhooks: users make and delete theirs through the API; deliveries are planned, claimed and
-- settled, each attempt added; the planning cursor moves on.
GRANT SELECT, INSERT, UPDATE ON :"schema".webhooks, :"schema".webhook_deliveries, :"schema".webhook_cursor TO :"role";
GRANT SELECT, INSERT ON :"schema".webhook_attempts TO :"role";

-- Users and their tokens (tokens mode): read only. The service checks a token; only the owner
-- makes users and tokens (`trainyard admin`), so the service's role cannot mint a token.
GRANT SELECT ON :"schema".users, :"schema".api_tokens TO :"role";

-- Migrations bookkeeping: read only, so start-up can check the schema is current.
GRANT SELECT ON :"schema".__drizzle_migrations TO :"role";
