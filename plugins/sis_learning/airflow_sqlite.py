"""Connection arguments for Airflow's metadata database when it is SQLite (the embedded default).

``make airflow`` runs Airflow's API server, scheduler, DAG processor, triggerer and task
processes on one SQLite file. Python's sqlite3 gives a writer 5 s to get the database; on a
busy machine a write waited longer and failed with "database is locked": the UI's Trigger
answered HTTP 500, and a task whose state update failed was retried (an approval task then
asked again). Writers wait up to 60 s instead.

``scripts/airflow-env.sh`` points Airflow at :data:`CONNECT_ARGS` (``[database]
sql_alchemy_connect_args`` and its async twin) only when the metadata database is SQLite;
PostgreSQL gets Airflow's defaults. Airflow imports this before anything of its own is
set up: no imports here.
"""

CONNECT_ARGS = {"timeout": 60}
