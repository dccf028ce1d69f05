"""Learning import rows as the pipeline sends them, and a small school to test against."""

from __future__ import annotations

from typing import Any


def organization(organization_id: str = "10", name: str = "North High School") -> dict[str, Any]:
    return {"organization_id": organization_id, "name": name}


def user(external_id: str, user_type: str = "S", organization_id: str = "10", **fields: Any) -> dict[str, Any]:
    row = {
        "external_id": external_id,
        "first_name": "Ana",
        "last_name": f"Lopez{external_id}",
        "login": f"user{external_id}",
        "email": f"user{external_id}@example.org",
        "user_type": user_type,
        "organization_id": organization_id,
        "enabled": True,
    }
    row.update(fields)
    return row


def learning_class(class_id: str, teacher_id: str, organization_id: str = "10", **fields: Any) -> dict[str, Any]:
    row = {
        "class_id": class_id,
        "name": f"Algebra I ({class_id}) - 1(A)",
        "code": "MA101",
        "year": "3500",
        "teacher_id": teacher_id,
        "organization_id": organization_id,
    }
    row.update(fields)
    return row


def seed_school(domain: Any, students: int = 2) -> dict[str, Any]:
    """One organization, one teacher, ``students`` students, one class with its roster."""
    assert domain.statuses("organizations", [organization()]) == ["created"]
    teacher = user("500", "T", login="teacher500")
    student_ids = [str(600 + number) for number in range(students)]
    assert set(domain.statuses("users", [teacher] + [user(sid) for sid in student_ids])) == {"created"}
    assert domain.statuses("classes", [learning_class("700", "500")]) == ["created"]
    roster = [{"class_id": "700", "user_type": "T", "user_id": "500", "role": "teacher"}] + [
        {"class_id": "700", "user_type": "S", "user_id": sid, "role": "student"} for sid in student_ids
    ]
    assert set(domain.statuses("rosters", roster)) == {"created"}
    return {"organization_id": "10", "teacher_id": "500", "class_id": "700", "student_ids": student_ids}
