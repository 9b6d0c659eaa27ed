"""W6's anchor (benchmarks/mlflow_compare/workloads.py ``copy_limit``): measured several ways in
the run, the fastest durable copy taken; and the report claims nothing about durability that
was not measured (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.mlflow_compare import report, workloads
from benchmarks.mlflow_compare.measure import make_file


def test_limit_is_the_fastest_of_every_durable_copy_before_and_after(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    make_file(str(src), 4 * 2**20)
    first = workloads.copy_limit(src, tmp_path)
    both = workloads.copy_limit(src, tmp_path, first)
    assert set(both["durable"]) == set(workloads.DURABLE_COPIES) and len(both["durable"]) >= 4
    assert all(len(m["runs"]) == 2 for m in both["durable"].values())
    fastest = max(both["durable"].values(), key=lambda m: m["rate"])
    assert both["limit"]["rate"] == fastest["rate"] >= first["limit"]["rate"]
    assert both["durable"][both["limit"]["method"]] is not None
    assert both["attempts"] == 2 and both["cp"]["rate"] > 0
    assert list(tmp_path.iterdir()) == [src]  # the copies are cleaned up


def test_report_does_not_infer_durability_from_speed() -> None:
    results: dict[str, Any] = {
        "copy_limit": {
            "size_mib": 256,
            "cp": {"rate": 4000.0},
            "durable": {
                "dd bs=8M conv=fsync": {"rate": 393.0, "runs": [393.0]},
                "cp + sync FILE (fsync)": {"rate": 1300.0, "runs": [1190.0, 1300.0]},
            },
            "limit": {"method": "cp + sync FILE (fsync)", "rate": 1300.0},
        },
        "runs": {"sqlite": {"mlflow": {"W6": {"upload": {"rate": 590.0}}}}},
    }
    notes = " ".join(report._w6_notes(results))
    assert "1300 MiB/s (cp + sync FILE (fsync))" in notes and "393" in notes
    assert "not measured here and not claimed" in notes
    assert "does not make the file durable" not in notes
    assert report.disk_limit(results) == (1300.0, "cp + sync FILE (fsync)")
