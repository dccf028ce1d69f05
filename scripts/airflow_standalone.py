"""`make airflow`: Airflow standalone (api-server, scheduler, dag-processor, triggerer)
from the repository, UI on http://localhost:8080, with the demo's connections and pools.

The login is printed by Airflow itself at start ("Login with username: admin password: ...")
and kept in .airflow/simple_auth_manager_passwords.json.generated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]


def main() -> None:
    from scripts.demo_environment import demo_environment

    env = {**os.environ, **demo_environment(start_sandboxes=True)}
    env.setdefault("AIRFLOW__API__PORT", "8080")
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://localhost:{env['AIRFLOW__API__PORT']}  (login printed below; also in {passwords})", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "standalone"], env=env, check=False)


if __name__ == "__main__":
    main()
