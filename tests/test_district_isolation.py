"""One district's bad file stays its own.

A folder of district files where some are broken (an unknown key, a misspelt time zone,
broken YAML, two districts sharing a Learning connection) is parsed by the real DAG files
through a DagBag: the good district's import and grade push DAGs are built as always, and
each bad file becomes a DAG whose one task fails at once with a message naming the file,
the key and the problem, emailing the district's recipients once per distinct error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from sandbox.smtp import running_smtp
from sis_learning import config as config_module
from sis_learning import import_tasks
from sis_learning.exceptions import DistrictConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"
DEMO = (REPO_ROOT / "include" / "districts" / "demo.yaml").read_text()


def _variant(text: str, **replace: str) -> str:
    for old, new in replace.items():
        old = old.replace("__", ".")
        assert old in text, old
        text = text.replace(old, new)
    return text


def _own_connections(text: str, name: str) -> str:
    return text.replace("connection_id: powerschool_demo", f"connection_id: powerschool_{name}").replace(
        "connection_id: learning_demo", f"connection_id: learning_{name}"
    )


@pytest.fixture
def districts(tmp_path, monkeypatch):
    folder = tmp_path / "districts"
    folder.mkdir()
    (folder / "demo.yaml").write_text(DEMO)
    (folder / "unknown_key.yaml").write_text(_own_connections(DEMO, "uk") + "colour: blue\n")
    (folder / "bad_zone.yaml").write_text(
        _own_connections(DEMO, "bz").replace("timezone: America/Chicago", "timezone: America/Chicgo")
    )
    (folder / "broken_yaml.yaml").write_text("name: [unclosed\nnotifications: {failure_emails: [a@b.org]\n")
    for name in ("twin_a", "twin_b"):
        text = _own_connections(DEMO, name).replace("connection_id: learning_" + name, "connection_id: learning_shared")
        (folder / f"{name}.yaml").write_text(text.replace("sis-admin@demo-usd.org", f"admin@{name}.org"))
    monkeypatch.setattr(config_module, "DISTRICTS_DIR", folder)
    return folder


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_bad_district_files_leave_the_others_parsing_and_show_as_failing_dags(districts):
    dagbag = _dagbag()
    assert dagbag.import_errors == {}, dagbag.import_errors
    assert len(dagbag.dags["sis_import__demo"].tasks) > 10, "the good district's import DAG is whole"
    assert "grade_push__demo" in dagbag.dags, "the good district's grade push DAG is built"
    expected = {
        "unknown_key": ("colour", "not a known setting"),
        "bad_zone": ("timezone", "America/Chicgo"),
        "broken_yaml": ("not valid YAML",),
        "twin_a": ("learning.connection_id", "learning_shared", str(districts / "twin_b.yaml")),
        "twin_b": ("learning.connection_id", "learning_shared", str(districts / "twin_a.yaml")),
    }
    for stem, words in expected.items():
        dag = dagbag.dags[f"sis_import__{stem}"]
        assert "configuration-error" in dag.tags
        assert [task.task_id for task in dag.tasks] == ["configuration_error"]
        assert dag.get_task("configuration_error").retries == 0
        shown = f"{dag.description}\n{dag.doc_md}"
        for word in (str(districts / f"{stem}.yaml"), *words):
            assert word in shown, (stem, word, dag.description)
        assert f"grade_push__{stem}" not in dagbag.dags


def test_two_districts_sharing_a_powerschool_connection_name_both_files(tmp_path):
    (tmp_path / "one.yaml").write_text(_variant(DEMO, learning_demo="learning_one"))
    (tmp_path / "two.yaml").write_text(_variant(DEMO, learning_demo="learning_two"))
    configs, broken = config_module.scan_districts(tmp_path)
    assert configs == []
    for item, other in zip(broken, ("two.yaml", "one.yaml"), strict=True):
        assert "powerschool.connection_id" in item.error and "powerschool_demo" in item.error
        assert str(tmp_path / other) in item.error and item.source_file in item.error


def test_the_broken_districts_task_fails_at_once_and_emails_once_per_distinct_error(districts, tmp_path, monkeypatch):
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", f"sqlite:///{tmp_path / 'staging.sqlite'}")
    source = str(districts / "bad_zone.yaml")
    with running_smtp() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_SANDBOX", smtp.airflow_connection_uri())
        for _ in range(3):  # three scheduled runs of the same broken file
            with pytest.raises(AirflowFailException) as raised:
                import_tasks.configuration_error(source, "scheduled__x")
            assert "timezone" in str(raised.value) and "America/Chicgo" in str(raised.value)
        [message] = smtp.mailbox.wait_for(1)
        time.sleep(0.5)
        assert len(smtp.mailbox.messages) == 1, "one email per distinct error, not one per run"
        assert message["To"] == "sis-admin@demo-usd.org"
        body = message.get_body(preferencelist=("html", "plain")).get_content()
        assert source in body and "timezone" in body and "America/Chicgo" in body

        Path(source).write_text(Path(source).read_text().replace("America/Chicgo", "Europe/Pariss"))
        with pytest.raises(AirflowFailException):
            import_tasks.configuration_error(source, "scheduled__y")
        smtp.mailbox.wait_for(2)  # a new error is a new email

        # Unreadable files name no recipient: the task still fails at once, with no email.
        with pytest.raises(AirflowFailException) as raised:
            import_tasks.configuration_error(str(districts / "broken_yaml.yaml"), "scheduled__z")
        assert "not valid YAML" in str(raised.value)


def _learning_connection(host: str, token: str) -> str:
    return json.dumps({"conn_type": "http", "host": host, "password": token})


def test_two_districts_reaching_the_same_learning_host_and_domain_are_refused_at_start(tmp_path, monkeypatch):
    folder = tmp_path / "districts"
    folder.mkdir()
    (folder / "north.yaml").write_text(_own_connections(DEMO, "north"))
    (folder / "south.yaml").write_text(_own_connections(DEMO, "south"))
    monkeypatch.setattr(config_module, "DISTRICTS_DIR", folder)
    monkeypatch.setenv("AIRFLOW_CONN_LEARNING_NORTH", _learning_connection("https://learning.example.org", "tok-1"))
    monkeypatch.setenv("AIRFLOW_CONN_LEARNING_SOUTH", _learning_connection("https://learning.example.org/", "tok-2"))
    north = config_module.load_district_by_id("north")
    assert import_tasks.check_targets_not_shared(north) == {"checked": 2}  # other domain: fine

    monkeypatch.setenv("AIRFLOW_CONN_LEARNING_SOUTH", _learning_connection("https://LEARNING.example.org/", "tok-1"))
    with pytest.raises(DistrictConfigError) as raised:
        import_tasks.check_targets_not_shared(north)
    message = str(raised.value)
    assert str(folder / "north.yaml") in message and str(folder / "south.yaml") in message
    assert "tok-1" not in message, "the token is compared, never shown"
    assert isinstance(raised.value, AirflowFailException)


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_the_broken_districts_dag_run_fails_at_once_without_retry(districts, tmp_path, monkeypatch):
    """A real DAG run (dag.test) of a broken district's DAG: failed, one try, one email."""
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", f"sqlite:///{tmp_path / 'staging.sqlite'}")
    dag = _dagbag().dags["sis_import__unknown_key"]
    with running_smtp() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_SANDBOX", smtp.airflow_connection_uri())
        dag_run = dag.test()
        [message] = smtp.mailbox.wait_for(1)
    assert dag_run.state == "failed"
    [ti] = dag_run.get_task_instances()
    assert (ti.task_id, str(ti.state), ti.try_number) == ("configuration_error", "failed", 1)
    assert "colour" in message.get_body(preferencelist=("html", "plain")).get_content()
