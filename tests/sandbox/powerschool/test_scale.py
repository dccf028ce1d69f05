"""Serving a large district: every CC row exactly once through the schema API, in bounded memory."""

from __future__ import annotations

import pytest

from sandbox.powerschool.testing import running_powerschool
from tests.sandbox.powerschool.conftest import ApiClient, as_list


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_page_through_every_cc_row_of_a_50000_student_district():
    with running_powerschool("M") as sandbox:
        api = ApiClient(sandbox, timeout=60)
        try:
            with sandbox.store() as store:
                expected = store.count("cc")
                checksum = sum(row["dcid"] for row in store.query("SELECT dcid FROM cc"))
            assert api.get_json("/ws/schema/table/cc/count") == {"count": expected}
            seen = 0
            total = 0
            page = 1
            peak = 0.0
            while True:
                records = as_list(
                    api.get_json(
                        "/ws/schema/table/cc", projection="dcid,studentid,sectionid", page=page, pagesize=1000
                    ).get("record")
                )
                seen += len(records)
                total += sum(int(record["tables"]["cc"]["dcid"]) for record in records)
                if page % 50 == 0:
                    peak = max(peak, _rss_mb(sandbox.process.pid))
                if len(records) < 1000:
                    break
                page += 1
            assert (seen, total) == (expected, checksum)
            assert peak < 300, f"server RSS {peak:.0f} MB while paging"
        finally:
            api.close()
