"""Measure batch upserts of users against the reference Learning server (rows per second).

    python -m sandbox.learning.measure_upsert [--database URL] [--batches 10] [--batch-size 1000]

Starts the server (HTTPS, as the pipeline reaches it) on ``--database`` (default: a
fresh SQLite file), then times, over the wire, three passes of ``--batches`` batches of
users: create (new users with the district default password), unchanged (the same rows
again) and update (every row changed). Bounded: 10 x 1,000 rows by default, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import time

from sandbox.learning.testing import running_learning


def user_rows(first: int, count: int, variant: str) -> list[dict]:
    return [
        {
            "external_id": str(number),
            "first_name": "Student",
            "last_name": f"Number {number} {variant}".strip(),
            "login": f"student{number}",
            "email": f"student{number}@example.org",
            "user_type": "S",
            "organization_id": "1",
            "enabled": True,
            "password": "District-Default-Password",
            "password_temporary": True,
        }
        for number in range(first, first + count)
    ]


def measure(database_url: str | None, batches: int, batch_size: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with running_learning({"bench": "bench-token-" + "x" * 16}, database_url) as learning:
        client = learning.client("bench")
        client.post("/api/v1/organizations/batch", json={"rows": [{"organization_id": "1", "name": "Bench High"}]})
        for phase, variant, expected in (
            ("create", "", "created"),
            ("unchanged", "", "unchanged"),
            ("update", "v2", "updated"),
        ):
            bodies = [
                {"rows": user_rows(1_000_000 + number * batch_size, batch_size, variant)} for number in range(batches)
            ]
            started = time.perf_counter()
            for body in bodies:
                answer = client.post("/api/v1/users/batch", json=body).json()
                if answer["summary"].get(expected) != batch_size:
                    raise RuntimeError(f"{phase}: expected {batch_size} {expected}, got {answer['summary']}")
            elapsed = time.perf_counter() - started
            figures[f"{phase}_rows_per_second"] = round(batches * batch_size / elapsed)
            figures[f"{phase}_seconds_per_batch"] = round(elapsed / batches, 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database", default=None, help="SQLAlchemy URL of an empty database (default: temporary SQLite)"
    )
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    arguments = parser.parse_args()
    if not 1 <= arguments.batches <= 100:
        parser.error("--batches: 1 to 100 (the measurement is meant to stay short)")
    figures = measure(arguments.database, arguments.batches, arguments.batch_size)
    backend = (arguments.database or "sqlite").split(":", 1)[0]
    print(json.dumps({"backend": backend, "batch_size": arguments.batch_size, "batches": arguments.batches, **figures}))


if __name__ == "__main__":
    main()
