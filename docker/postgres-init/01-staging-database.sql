-- Runs once, when the PostgreSQL volume is first created (docker-entrypoint-initdb.d).
-- Airflow's metadata lives in POSTGRES_DB (airflow); the staged tables an analyst queries
-- live in their own database, so they can be backed up, granted and sized on their own
-- and a metadata-database migration never touches them.
CREATE DATABASE sis_learning_staging;
