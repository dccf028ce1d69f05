"""A run that cannot reach PowerSchool fails, and the district gets exactly one email that says why.

The PowerSchool connection carries a wrong client secret: the OAuth token request is
refused, extract fails at once (no retry can fix credentials), the run is failed, nothing
is written to Learning, and the SMTP catcher receives one message naming the district, the
failed step, the reason in plain words and a link to the run in the Airflow UI.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

import pytest

from tests.e2e.conftest import DAG_ID, DISTRICT_ID, run_dag

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def body_text(message) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else message.get_content()


def text_and_html(message) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative", message.get_content_type()
    return tuple(
        message.get_body(preferencelist=(kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html")
    )


def test_wrong_client_secret_fails_the_run_with_one_email(import_dag, sandboxes):
    name = f"AIRFLOW_CONN_POWERSCHOOL_{DISTRICT_ID.upper()}"
    connection = json.loads(os.environ[name])
    connection["password"] = "not-the-client-secret"
    sandboxes.monkeypatch.setenv(name, json.dumps(connection))
    mark = sandboxes.learning_log_mark()

    dag_run, seconds = run_dag(import_dag)
    print(f"failed run: {seconds:.1f}s")
    assert dag_run.state == "failed"

    messages = sandboxes.smtp.mailbox.wait_for(1, timeout=30)
    time.sleep(1.0)  # a second email would have arrived by now
    assert len(sandboxes.smtp.mailbox.messages) == 1, [m["Subject"] for m in sandboxes.smtp.mailbox.messages]
    message = messages[0]
    subject = message["Subject"]
    assert "sis-admin@demo-usd.org" in message["To"]
    assert subject == "[SIS -> Learning] Demo Unified School District: could not read schools from PowerSchool"
    text, html = text_and_html(message)
    # The first sentence says what to do: the credentials PowerSchool refused, and where they are set.
    first = text.split("\n\n")[0].replace("\n", " ")
    assert first.startswith("Action needed before the next import can succeed: PowerSchool"), first
    assert "powerschool_demo" in first and ("secret" in first.lower() or "credential" in first.lower()), first
    for body in (text, html):
        flat = body.replace("\n", " ")
        assert "(demo)" in flat
        assert "not-the-client-secret" not in flat  # no secret in an email
        assert "Airflow made 1 attempt at this step and did not retry" in flat, flat
        assert f"/dags/{DAG_ID}/runs/{quote(dag_run.run_id, safe='')}" in flat, flat

    assert [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"] == []
    assert sandboxes.learning.users(DISTRICT_ID) == {}
