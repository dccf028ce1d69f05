"""/ws/schema: table reads (CC, students, sections, teachers, SectionTeacher + RoleDef), the guardian
PowerQuery, every value a string, bare counts and the "No access to the field" error."""

from __future__ import annotations

import pytest

from tests.sandbox.powerschool.conftest import as_list

GUARDIAN_QUERY = "/ws/schema/query/com.pearson.core.guardian.student_guardian_detail"


def records(body, table):
    return [record["tables"][table] for record in as_list(body.get("record"))]


def test_projection_is_required(api):
    response = api.get("/ws/schema/table/students")
    assert response.status_code == 400
    assert "projection" in response.json()["message"]


def test_unknown_column_and_table(api):
    assert api.get("/ws/schema/table/students", projection="dcid,shoe_size").status_code == 400
    assert api.get("/ws/schema/table/nothing", projection="id").status_code == 404


@pytest.mark.parametrize("table", ["cc", "students", "sections", "teachers", "sectionteacher", "roledef", "terms"])
def test_every_value_is_a_string_and_count_is_bare(api, oracle, table):
    body = api.get_json(f"/ws/schema/table/{table}", projection="*", pagesize=1000)
    assert body["name"] == table
    rows = records(body, table)
    assert len(rows) == oracle.count(table)
    assert all(isinstance(value, str) for row in rows for value in row.values())
    assert api.get_json(f"/ws/schema/table/{table}/count") == {"count": oracle.count(table)}


def test_cc_table_holds_dropped_enrollments_with_negative_section_ids(api, oracle):
    body = api.get_json(
        "/ws/schema/table/cc",
        projection="dcid,studentid,sectionid,dateenrolled,dateleft",
        q="sectionid=lt=0",
        pagesize=1000,
    )
    dropped = records(body, "cc")
    assert dropped
    assert len(dropped) == oracle.count("cc", "sectionid < 0")
    assert all(int(row["sectionid"]) < 0 for row in dropped)
    assert api.get_json("/ws/schema/table/cc/count", q="cc.sectionid=gt=0") == {
        "count": oracle.count("cc", "sectionid > 0")
    }


def test_co_teachers_are_sectionteacher_rows_with_a_role(api, oracle):
    roles = {
        row["id"]: row["name"]
        for row in records(api.get_json("/ws/schema/table/roledef", projection="id,name"), "roledef")
    }
    assert set(roles.values()) == {"Lead Teacher", "Co-teacher", "Support Staff"}
    co_role = next(role_id for role_id, name in roles.items() if name == "Co-teacher")
    rows = records(
        api.get_json(
            "/ws/schema/table/sectionteacher",
            projection="sectionid,teacherid,roleid",
            q=f"roleid=={co_role}",
            pagesize=1000,
        ),
        "sectionteacher",
    )
    loads = {}
    for row in rows:
        loads[row["teacherid"]] = loads.get(row["teacherid"], 0) + 1
    assert {24, 25, 26, 30} <= set(loads.values())
    # The lead teacher has a row too, matching sections.teacher.
    lead_role = next(role_id for role_id, name in roles.items() if name == "Lead Teacher")
    section = next(oracle.rows("sections", "teacher <> 0"))
    leads = records(
        api.get_json(
            "/ws/schema/table/sectionteacher",
            projection="teacherid",
            q=f"sectionid=={section['id']};roleid=={lead_role}",
        ),
        "sectionteacher",
    )
    assert leads == [{"teacherid": str(section["teacher"])}]


def test_null_values_come_back_as_empty_strings_with_their_key(api, oracle):
    # Quirk 5: Oracle stores '' as NULL, and a NULL column is sent as "" with its key,
    # text, numeric and date columns alike.
    student = next(oracle.rows("students", "student_web_id IS NULL"))
    row = records(
        api.get_json(
            "/ws/schema/table/students", projection="dcid,student_web_id,last_name", q=f"dcid=={student['dcid']}"
        ),
        "students",
    )[0]
    assert row == {"dcid": str(student["dcid"]), "student_web_id": "", "last_name": student["last_name"]}
    district_category = records(
        api.get_json(
            "/ws/schema/table/teachercategory",
            projection="id,users_dcid,description",
            q="categorytype==district",
            pagesize=1,
        ),
        "teachercategory",
    )[0]
    assert district_category["users_dcid"] == ""  # a numeric column, NULL
    assert district_category["description"] == ""


def test_record_is_an_array_even_for_one_row_and_empty_page_shape(api, oracle):
    student = next(oracle.rows("students"))
    body = api.get_json("/ws/schema/table/students", projection="dcid", q=f"dcid=={student['dcid']}")
    assert isinstance(body["record"], list) and len(body["record"]) == 1
    assert body["record"][0]["tables"]["students"] == {"dcid": str(student["dcid"])}
    # Every empty-page style of /ws/v1 leaves /ws/schema alone: always {"name", "record": []}.
    for _ in range(6):
        assert api.get_json("/ws/schema/table/students", projection="dcid", q="dcid==-1") == {
            "name": "students",
            "record": [],
        }
    one = api.post(GUARDIAN_QUERY, {"students_dcid": [student["dcid"]]}, pagesize=1).json()
    assert isinstance(one["record"], list) and len(one["record"]) == 1
    assert api.post(GUARDIAN_QUERY, {"students_dcid": [-5]}).json() == {
        "name": GUARDIAN_QUERY[len("/ws/schema/query/") :],
        "record": [],
    }


def test_table_metadata_lists_columns_with_access(api, powerschool):
    body = api.get_json("/ws/schema/table/students/metadata")
    assert body["name"] == "students"
    columns = {column["name"]: column for column in body["columns"]}
    assert {"dcid", "id", "student_web_id", "grade_level", "entrydate"} <= set(columns)
    assert all(column["access"] == "ViewOnly" for column in columns.values())
    assert columns["grade_level"]["type"] == "Long" and columns["entrydate"]["type"] == "Date"
    powerschool.configure(field_grants={"students": ["dcid", "last_name"]})
    limited = {
        column["name"]: column["access"] for column in api.get_json("/ws/schema/table/students/metadata")["columns"]
    }
    assert limited["dcid"] == "ViewOnly" and limited["email"] == "NoAccess"
    assert api.get("/ws/schema/table/nothing/metadata").status_code == 404


def test_one_row_by_id_under_top_level_tables(api, oracle):
    student = next(oracle.rows("students", "student_web_id IS NULL"))
    body = api.get_json(f"/ws/schema/table/students/{student['dcid']}", projection="dcid,last_name,student_web_id")
    assert body["tables"] == {
        "students": {"dcid": str(student["dcid"]), "last_name": student["last_name"], "student_web_id": ""}
    }
    assert body["name"] == "students"
    role = api.get_json("/ws/schema/table/roledef/2", projection="name")
    assert role["tables"] == {"roledef": {"name": "Co-teacher"}}
    assert api.get("/ws/schema/table/students/999999999", projection="dcid").status_code == 404
    assert api.get(f"/ws/schema/table/students/{student['dcid']}").status_code == 400  # projection required


def test_not_equal_operator(api, oracle):
    body = api.get_json(
        "/ws/schema/table/students", projection="dcid,enroll_status", q="enroll_status!=0", pagesize=1000
    )
    rows = records(body, "students")
    assert len(rows) == oracle.count("students", "enroll_status <> 0") > 0
    assert all(row["enroll_status"] != "0" for row in rows)
    # != never matches NULL, as in PowerSchool's database
    assert api.get_json("/ws/schema/table/students/count", q="student_web_id!=nobody") == {
        "count": oracle.count("students", "student_web_id IS NOT NULL")
    }
    listed = api.get_json("/ws/schema/table/students/count", q="enroll_status!=(0,2)")
    assert listed == {"count": oracle.count("students", "enroll_status NOT IN (0, 2)")}
    school = next(oracle.rows("schools"))
    v1 = as_list(
        api.get_json(
            f"/ws/v1/school/{school['dcid']}/student",
            q="school_enrollment.enroll_status!=A",
            pagesize=1000,
            expansions="school_enrollment",
        )["students"]["student"]
    )
    assert len(v1) == oracle.count("students", "schoolid = ? AND enroll_status <> 0", (school["school_number"],)) > 0
    assert all(item["school_enrollment"]["enroll_status"] != "A" for item in v1)


def test_sort_and_sortdescending(api, oracle):
    rows = records(
        api.get_json("/ws/schema/table/students", projection="dcid,last_name", sort="last_name", pagesize=1000),
        "students",
    )
    expected = [str(row["dcid"]) for row in oracle.query("SELECT dcid FROM students ORDER BY last_name, dcid")]
    assert [row["dcid"] for row in rows] == expected
    down = records(
        api.get_json("/ws/schema/table/cc", projection="dcid", sort="dcid", sortdescending="true", pagesize=1000), "cc"
    )
    assert [int(row["dcid"]) for row in down] == sorted((row["dcid"] for row in oracle.rows("cc")), reverse=True)
    # paged sorted reads continue where the last page ended
    paged = []
    for page in (1, 2, 3):
        paged += records(
            api.get_json("/ws/schema/table/students", projection="dcid", sort="last_name", page=page, pagesize=25),
            "students",
        )
    assert [row["dcid"] for row in paged] == expected[:75]
    school = next(oracle.rows("schools"))
    v1 = as_list(
        api.get_json(
            f"/ws/v1/school/{school['dcid']}/student", sort="name.last_name", sortdescending="true", pagesize=1000
        )["students"]["student"]
    )
    names = [item["name"]["last_name"] for item in v1]
    assert names == sorted(names, reverse=True)
    assert api.get("/ws/schema/table/students", projection="dcid", sort="shoe_size").status_code == 400
    assert (
        api.get("/ws/schema/table/students", projection="dcid", sort="dcid", sortdescending="maybe").status_code == 400
    )


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/ws/schema/table/students", {"projection": "dcid", "order": "dcid"}, "order"),
        ("/ws/schema/table/students/count", {"pagesize": "5"}, "pagesize"),
        ("/ws/v1/district/school", {"limit": "5"}, "limit"),
        ("/ws/v1/metadata", {"verbose": "1"}, "verbose"),
    ],
)
def test_an_unsupported_parameter_is_refused_naming_it(api, path, params, named):
    response = api.get(path, **params)
    assert response.status_code == 400
    assert named in response.json()["message"]


def test_powerquery_refuses_unknown_parameters(api):
    response = api.post(GUARDIAN_QUERY, {}, order="guardianid")
    assert response.status_code == 400 and "order" in response.json()["message"]


def test_field_grants_answer_validation_failed(api, powerschool):
    powerschool.configure(field_grants={"students": ["dcid", "id", "first_name", "last_name"]})
    response = api.get("/ws/schema/table/students", projection="dcid,email,student_web_id")
    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation Failed",
        "errors": [
            {"resource": "students", "field": "email", "code": "No access to the field"},
            {"resource": "students", "field": "student_web_id", "code": "No access to the field"},
        ],
    }
    granted = api.get_json("/ws/schema/table/students", projection="*", pagesize=1)
    assert set(records(granted, "students")[0]) <= {"dcid", "id", "first_name", "last_name"}
    assert api.get("/ws/schema/table/cc", projection="dcid").status_code == 200


def test_guardian_query_for_given_students(api, oracle):
    students = [row["dcid"] for row in oracle.query("SELECT dcid FROM students ORDER BY dcid LIMIT 5")]
    body = api.post(GUARDIAN_QUERY, {"students_dcid": students}, pagesize=0).json()
    rows = as_list(body["record"])
    expected = oracle.query(
        "SELECT gs.studentsdcid, g.guardianid, g.accountidentifier, pa.username FROM guardianstudent gs "
        "JOIN guardian g ON g.guardianid = gs.guardianid LEFT JOIN pcas_account pa "
        "ON pa.pcas_accounttoken = g.accountidentifier WHERE gs.studentsdcid IN ({}) ORDER BY gs.rowid".format(
            ",".join("?" * len(students))
        ),
        tuple(students),
    )
    assert [(row["studentsdcid"], row["guardianid"]) for row in rows] == [
        (str(item["studentsdcid"]), str(item["guardianid"])) for item in expected
    ]
    assert all(isinstance(value, str) for row in rows for value in row.values())
    for row, item in zip(rows, expected, strict=True):
        assert row.get("username") == item["username"]


def test_guardian_query_all_rows_count_and_paging(api, oracle):
    total = oracle.count("guardianstudent")
    assert api.post(f"{GUARDIAN_QUERY}/count", {}).json() == {"count": total}
    everything = as_list(api.post(GUARDIAN_QUERY, {}, pagesize=0).json()["record"])
    assert len(everything) == total
    paged, page = [], 1
    while True:
        chunk = as_list(api.post(GUARDIAN_QUERY, {}, pagesize=25, page=page).json().get("record"))
        paged.extend(chunk)
        if len(chunk) < 25:
            break
        page += 1
    assert paged == everything


def test_guardians_without_a_portal_account_have_no_username(api, oracle):
    without = oracle.count("guardian", "accountidentifier IS NULL")
    assert without > 0
    rows = as_list(api.post(GUARDIAN_QUERY, {}, pagesize=0).json()["record"])
    assert any("username" not in row for row in rows)
    assert any("emailaddress" in row for row in rows)


def test_guardian_query_grants_and_bad_arguments(api, powerschool):
    assert api.post(GUARDIAN_QUERY, {"students": [1]}).status_code == 400
    assert api.post(GUARDIAN_QUERY, {"students_dcid": ["x"]}).status_code == 400
    assert api.post("/ws/schema/query/com.example.nothing", {}).status_code == 404
    powerschool.configure(field_grants={"pcas_emailcontact": []})
    response = api.post(GUARDIAN_QUERY, {})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"resource": "pcas_emailcontact", "field": "emailaddress", "code": "No access to the field"}
    ]


def test_powerquery_needs_json(api):
    response = api.http.post(
        GUARDIAN_QUERY,
        content=b"students_dcid=1",
        headers={**api.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


def test_a_chunked_request_body_is_read(api, oracle):
    def chunks():
        yield b'{"students_dcid": '
        yield b"[%d]}" % next(oracle.rows("students"))["dcid"]

    response = api.http.post(
        f"{GUARDIAN_QUERY}/count", content=chunks(), headers={**api.headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["count"] >= 1
    assert api.get("/ws/v1/metadata").status_code == 200  # the connection is still in step
