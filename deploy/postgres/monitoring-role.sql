-- The least-privileged role pgfed's WAL sampler needs (src/wal/sampler.ts), PostgreSQL 15+.
--
--   pg_monitor       reads pg_stat_archiver, pg_stat_replication, pg_stat_wal_receiver with all
--                    columns (via pg_read_all_stats) and lists pg_wal/archive_status with
--                    pg_ls_archive_statusdir() (the .ready files: segments waiting for archiving).
--   pg_switch_wal()  the one write-side function pgfed calls: it closes the current WAL segment so
--                    the archiver ships it when un-archived WAL gets old (the "nudge"). It writes no
--                    data; superuser-only by default, hence the explicit grant.
--
-- Everything else the sample reads (pg_is_in_recovery, pg_current_wal_lsn, pg_walfile_name,
-- pg_last_wal_receive_lsn, pg_last_wal_replay_lsn, pg_last_xact_replay_timestamp,
-- pg_control_checkpoint) is executable by PUBLIC.
--
-- Run as a superuser on the primary (it replicates to every replica). With CNPG, put it in
-- spec.bootstrap.initdb.postInitSQL or a managed role (spec.managed.roles: inRoles [pg_monitor])
-- plus this GRANT, and give pgfed the password through a basic-auth secret (keys username,
-- password) named in the member's `postgres.secretRef`.
--
-- psql -v password="'…'" -f monitoring-role.sql   (omit -v password to set it later)

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgfed_monitor') THEN
    CREATE ROLE pgfed_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
      CONNECTION LIMIT 8;
  END IF;
END
$$;

GRANT pg_monitor TO pgfed_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO pgfed_monitor;

-- A sample is one small SELECT; a stuck one must not hold a connection.
ALTER ROLE pgfed_monitor SET statement_timeout = '5s';
ALTER ROLE pgfed_monitor SET default_transaction_read_only = on;

\if :{?password}
ALTER ROLE pgfed_monitor PASSWORD :password;
\endif
