"""`make score`: be a teacher in the demo's Learning, enter a score, and watch PowerTeacher get it.

    make score                                      # the first imported class and its first student, score 9
    make score CLASS=300025 STUDENT=1000002 SCORE=8

Needs `make airflow` running (it writes var/standalone/sandboxes.json: where its sandboxes
are and their generated local credentials) and one finished `sis_import__demo` run (the
classes must be in Learning). In the reference Learning server it creates the gradable
"Reading check" in the class (once), enters the score through Learning's gradebook API, as
a teacher's browser would, then reads PowerTeacher Pro in the PowerSchool simulator until
the score is there: grade push's watcher saw the change and `grade_push__demo` wrote it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where `make airflow` describes its sandboxes (SIS_LEARNING_STANDALONE_DIR moves its state, as there).
SANDBOXES_FILE = Path(
    os.environ.get("SIS_LEARNING_SANDBOXES_FILE")
    or Path(os.environ.get("SIS_LEARNING_STANDALONE_DIR") or REPO_ROOT / "var" / "standalone") / "sandboxes.json"
)
TITLE = "Reading check"


def say(message: str) -> None:
    print(message, flush=True)


def learning_client(sandboxes: dict[str, Any]) -> httpx.Client:
    learning = sandboxes["learning"]
    return httpx.Client(
        base_url=learning["base_url"],
        verify=learning["ca_bundle"] or True,
        timeout=30,
        headers={"Authorization": f"Bearer {learning['token']}", "Accept": "application/json"},
    )


def powerteacher_score(sandboxes: dict[str, Any], class_id: str, student: str) -> str | None:
    """The score PowerTeacher Pro holds for the student in the class's "Reading check", if any."""
    powerschool = sandboxes["powerschool"]
    response = httpx.get(
        f"{powerschool['base_url']}/sandbox/admin/assignments",
        params={"section_dcid": class_id},
        headers={"X-Sandbox-Admin-Token": powerschool["admin_token"]},
        verify=powerschool["ca_bundle"],
        timeout=30,
    )
    response.raise_for_status()
    for assignment in response.json():
        for section in assignment.get("_assignmentsections") or []:
            if str(section.get("sectionsdcid")) == class_id and section.get("name") == TITLE:
                for score in section.get("_assignmentscores") or []:
                    if str(score.get("studentsdcid")) == student:
                        return score.get("actualscoreentered")
    return None


def rows(client: httpx.Client, entity: str) -> list[dict[str, Any]]:
    found, page = [], 1
    while True:
        body = client.get(f"/api/v1/{entity}", params={"page": page, "page_size": 1000}).raise_for_status().json()
        found += body["rows"]
        if not body["has_more"]:
            return found
        page += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--class-id", default="", help="a Learning class (section DCID); default: the first one")
    parser.add_argument("--student", default="", help="a student's DCID on its roster; default: the first one")
    parser.add_argument("--score", default="9")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for PowerTeacher")
    arguments = parser.parse_args(argv)
    try:
        sandboxes = json.loads(SANDBOXES_FILE.read_text())
    except (OSError, ValueError):
        say(
            f"No running `make airflow` found ({SANDBOXES_FILE}): start it, trigger sis_import__demo once, then "
            "run make score again."
        )
        return 2
    with learning_client(sandboxes) as learning:
        roster = [row for row in rows(learning, "rosters") if row["user_type"] == "S"]
        if not roster:
            say(
                "Learning has no class with a student yet: trigger sis_import__demo in the Airflow UI and wait for "
                "it to end green, then run make score again."
            )
            return 2
        roster.sort(key=lambda row: (row["class_id"], row["user_id"]))
        class_id = arguments.class_id or roster[0]["class_id"]
        students = [row["user_id"] for row in roster if row["class_id"] == class_id]
        student = arguments.student or (students[0] if students else "")
        if student not in students:
            say(f"Student {student or '(none)'} is not on class {class_id}'s roster in Learning.")
            return 2
        gradables = learning.get(f"/api/v1/classes/{class_id}/gradables").raise_for_status().json()
        gradable = next((item for item in gradables if item["title"] == TITLE), None)
        if gradable is None:
            gradable = (
                learning.post(
                    f"/api/v1/classes/{class_id}/gradables",
                    json={"title": TITLE, "total_points": 10, "type": "Assignment"},
                )
                .raise_for_status()
                .json()
            )
        learning.put(
            f"/api/v1/gradables/{gradable['id']}/scores/{student}", json={"score": arguments.score}
        ).raise_for_status()
    started = time.monotonic()
    say(
        f"Entered {arguments.score} for student {student} in '{TITLE}' of class {class_id} in Learning "
        f"(as the teacher). Waiting for grade push to write it to PowerTeacher ..."
    )
    while time.monotonic() - started < arguments.wait:
        if powerteacher_score(sandboxes, class_id, student) == arguments.score:
            say(
                f"PowerTeacher Pro has it after {time.monotonic() - started:.1f} s: section {class_id}, assignment "
                f"'{TITLE}', student {student}: {arguments.score}. The run is grade_push__demo's latest in the UI."
            )
            return 0
        time.sleep(0.5)
    say(
        f"PowerTeacher does not have it after {arguments.wait:.0f} s. Is grade_push__demo unpaused (make airflow "
        "unpauses it)? Its runs in the UI say what happened."
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
