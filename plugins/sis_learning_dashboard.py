"""Airflow plugin: the "Districts" pages of this project inside the Airflow 3 UI.

A FastAPI app (``sis_learning.dashboard.app``) mounted by the API server under
``/sis-learning``, and an external view that puts "Districts" in the UI's navigation
and shows the app's page inside the UI. Read-only, from the staging database, behind
Airflow's own authentication. docs/dashboard.md says what each figure is.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from sis_learning.dashboard.app import MOUNT_PREFIX, create_app


class SisLearningDashboardPlugin(AirflowPlugin):
    name = "sis_learning_dashboard"
    fastapi_apps = [{"app": create_app(), "url_prefix": MOUNT_PREFIX, "name": "SIS -> Learning districts"}]
    external_views = [
        {
            "name": "Districts",
            # Relative: the UI resolves it against its base URL, so a deployment under a sub-path works.
            "href": f"{MOUNT_PREFIX.lstrip('/')}/districts",
            "url_route": "districts",
            "destination": "nav",
            "icon": f"{MOUNT_PREFIX.lstrip('/')}/icon.svg",
        }
    ]
