"""The plugin registers the app and its nav entry as Airflow 3 expects; the charts are well-formed SVG."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET

from sis_learning.dashboard import charts
from tests.conftest import REPO_ROOT


def load_plugin_module():
    path = REPO_ROOT / "plugins" / "sis_learning_dashboard.py"
    spec = importlib.util.spec_from_file_location("sis_learning_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_mounts_the_app_and_a_nav_entry():
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    plugin = load_plugin_module().SisLearningDashboardPlugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/sis-learning" and app["name"]
    assert not any(
        app["url_prefix"].startswith(prefix) for prefix in ("/api/v2", "/ui", "/execution", "/auth", "/pluginsv2")
    )  # Airflow's reserved prefixes
    paths = {route.path for route in app["app"].routes}
    assert {"/districts", "/districts/{district_id}", "/districts/{district_id}/rows"} <= paths
    (view,) = plugin.external_views
    ExternalViewResponse(**view)  # the UI's own schema for a nav entry
    assert view["destination"] == "nav" and not view["href"].startswith("/")  # relative to the UI's base URL
    assert view["href"].endswith("districts") and view["url_route"] == "districts"


def test_charts_are_svg_with_escaped_labels():
    labels = ["2026-12-01 06:00", "<b>x</b> & y"]
    for svg in (
        charts.line_chart("Users & classes", labels, {"users": [10, 12], "classes": [2, 3]}),
        charts.bar_chart("Changes", labels, {"created": [1, 0], "removed": [0, 7]}),
    ):
        root = ET.fromstring(svg)  # well-formed: every label escaped
        assert root.tag.endswith("svg")
        titles = [element.text for element in root.iter() if element.tag.endswith("title")]
        assert any("<b>x</b> & y" in (title or "") for title in titles)
    ET.fromstring(charts.bar_chart("Empty", [], {"created": []}))  # no run: an empty frame, no error
    ET.fromstring(charts.line_chart("One run", ["a"], {"users": [0]}))
    assert charts._nice_max(0) == 1 and charts._nice_max(7) == 10 and charts._nice_max(1234) == 2000
