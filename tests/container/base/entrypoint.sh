#!/bin/bash
# The official image's entrypoint, reduced to what the compose stack uses: migrate the
# metadata database first when _AIRFLOW_DB_MIGRATE=true, then run the command. A first
# word of bash, python or airflow runs as it is; anything else is an airflow subcommand
# (`scheduler`, `celery worker`, ...), as in the official image.
set -euo pipefail

if [[ "${_AIRFLOW_DB_MIGRATE:-}" == "true" ]]; then
    airflow db migrate
fi

if [[ $# -eq 0 ]]; then
    exec airflow --help
fi
case "$1" in
    bash | python | python3 | airflow)
        exec "$@"
        ;;
    *)
        exec airflow "$@"
        ;;
esac
