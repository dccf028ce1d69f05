"""The simulator's change cursors: ``whenmodified`` / ``transaction_date`` on /ws/schema/table reads.

Changes made through the admin API move the cursor; ``q=whenmodified=ge=DATE`` returns
only them; a hard delete leaves nothing a cursor read could see (as in PowerSchool); ``*``
keeps to the table's own columns; a plugin without the field gets Validation Failed.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from tests.sandbox.powerschool.conftest import as_list


def rows(api, table, **params):
    body = api.get_json(f"/ws/schema/table/{table}", pagesize=1000, **params)
    return [record["tables"][table] for record in as_list(body.get("record"))]


def test_cursor_reads_see_admin_changes_but_not_hard_deletes(powerschool_writable):
    sandbox, api, store = powerschool_writable
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert rows(api, "cc", projection="dcid,whenmodified", q=f"whenmodified=ge={yesterday}") == []
    student = store.query("SELECT st.dcid FROM students st WHERE enroll_status = 0 ORDER BY dcid LIMIT 1")[0]["dcid"]
    section = store.query("SELECT dcid FROM sections ORDER BY dcid LIMIT 1")[0]["dcid"]
    enrolled = sandbox.enroll_student(student, section)
    changed = rows(api, "cc", projection="dcid,whenmodified", q=f"whenmodified=ge={yesterday}")
    assert [row["dcid"] for row in changed] == [str(enrolled["cc_dcid"])]
    assert changed[0]["whenmodified"][:10] >= yesterday
    sandbox.rename("student", student, first_name="Renamed")
    assert [
        row["dcid"]
        for row in rows(api, "students", projection="dcid,transaction_date", q=f"transaction_date=ge={yesterday}")
    ] == [str(student)]
    connection = sqlite3.connect(sandbox.database_path)
    connection.execute("DELETE FROM cc WHERE dcid = ?", (enrolled["cc_dcid"],))
    connection.commit()
    connection.close()
    assert rows(api, "cc", projection="dcid", q=f"whenmodified=ge={yesterday}") == []
    assert "whenmodified" not in rows(api, "cc", projection="*")[0]


def test_a_plugin_without_the_cursor_field_is_refused(powerschool_writable):
    sandbox, api, _store = powerschool_writable
    sandbox.configure(field_grants={"cc": ["dcid", "studentid"]})
    response = api.get("/ws/schema/table/cc", projection="dcid", q="whenmodified=ge=2026-01-01")
    assert response.status_code == 400 or "No access to the field" in response.text
    assert "whenmodified" in response.text
