"""`make airflow`: Airflow standalone from the repository, with the embedded default.

Starts the sandboxes (PowerSchool SIS simulator, reference Learning, SMTP catcher), gives
Airflow their connections as AIRFLOW_CONN_* variables, creates the pools, and runs
`airflow standalone` (api-server with the UI on http://localhost:8080, scheduler,
dag-processor, triggerer). Airflow prints the login at start ("Login with username: admin
password: ..."); it is also kept in .airflow/simple_auth_manager_passwords.json.generated.
Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

POOLS_FILE = REPO_ROOT / "docker" / "pools.json"  # one pools file for standalone, the Celery stack and compose


def airflow(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, check=check)


def create_pools(env: dict[str, str]) -> None:
    airflow("pools", "import", str(POOLS_FILE), env=env)


def main() -> None:
    from scripts.demo_environment import demo_services

    with demo_services(state_dir=REPO_ROOT / "var" / "standalone") as services:
        env = {**os.environ, **services.env}
        env.setdefault("AIRFLOW__API__PORT", "8080")
        airflow("db", "migrate", env=env)
        create_pools(env)
        passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        print(f"\nAirflow UI: http://localhost:{env['AIRFLOW__API__PORT']} (user admin; the password is printed "
              f"below by Airflow and kept in {passwords})", flush=True)
        print(f"PowerSchool SIS simulator: {services.powerschool.base_url}; Learning: {services.learning.base_url}; "
              f"SMTP catcher: {services.smtp.host}:{services.smtp.port}", flush=True)
        try:
            airflow("standalone", env=env, check=False)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
