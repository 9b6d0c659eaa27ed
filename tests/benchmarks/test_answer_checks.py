"""The MLflow comparison's answer checks (benchmarks/mlflow_compare/answers.py, report.py):
a workload whose answers are wrong or differ between the products gets no ratio and no
PASS/FAIL, and repeats fold into medians with their spread. Pure functions on synthetic
results: no server, no MLflow."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from benchmarks.mlflow_compare import answers, report


def _load_client_script() -> Any:
    # A script run in both products' venvs (standard library only), not a package module:
    # loaded from its file so that nothing is put on sys.path for the rest of the session.
    path = Path(report.__file__).with_name("client_script.py")
    spec = importlib.util.spec_from_file_location("bench_client_script", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client_script = _load_client_script()


def _w1(rate: float, digest: str = "d1", ok: bool = True) -> dict[str, Any]:
    problems = [] if ok else ["stored 19000 points, sent 20000"]
    return {
        "rate": rate,
        "wall_s": 1.0,
        "points": 20000,
        "check": {"ok": ok, "problems": problems, "digest": digest},
    }


def _w4(p50: float, label: list[str], prefix: list[str]) -> dict[str, Any]:
    return {
        "label": {"p50_ms": p50, "p95_ms": p50 * 1.2, "n": len(label)},
        "prefix": {"p50_ms": p50, "p95_ms": p50 * 1.2, "n": len(prefix)},
        "capped": {"label": False, "prefix": False},
        "check": {"ok": True, "problems": [], "label_digests": label, "prefix_digests": prefix},
    }


def _results(m_runs: list[dict[str, Any]], o_runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_product = {"mlflow": m_runs, "podstack": o_runs}
    workloads = sorted({w for r in m_runs + o_runs for w in r})
    return {
        "runs": {"sqlite": {p: answers.combine(r) for p, r in by_product.items()}},
        "validity": {
            "sqlite": {
                w: answers.validity(w, {p: [r.get(w) for r in rs] for p, rs in by_product.items()})
                for w in workloads
            }
        },
    }


def _rows(results: dict[str, Any], workload: str) -> list[report.Row]:
    return [r for r in report.build_rows(results) if r.workload == workload]


def test_equal_correct_answers_give_median_ratio_and_spread() -> None:
    res = _results(
        [{"W1": _w1(r)} for r in (100.0, 120.0, 110.0)],
        [{"W1": _w1(r)} for r in (1000.0, 1300.0, 1200.0)],
    )
    rate, ans = _rows(res, "W1")
    assert rate.mlflow.startswith("110") and "(100.0-120.0)" in rate.mlflow
    assert rate.ours.startswith("1,200") and "(1,000.0-1,300.0)" in rate.ours
    assert rate.speedup.startswith("10.91x") and "(10.00-10.91)" in rate.speedup
    assert rate.status == "PASS"
    assert ans.metric == "answers" and ans.status == "PASS"


def test_a_side_that_stored_fewer_points_gets_no_ratio() -> None:
    res = _results(
        [{"W1": _w1(100.0)}, {"W1": _w1(100.0, ok=False)}, {"W1": _w1(100.0)}],
        [{"W1": _w1(5000.0)} for _ in range(3)],
    )
    rate, ans = _rows(res, "W1")
    assert rate.speedup == "-" and rate.status == "INVALID"
    assert ans.status == "INVALID" and "mlflow run 2: stored 19000 points" in ans.mlflow
    assert "x" not in report.text_table([rate]).splitlines()[-1].split()[5]


def test_answers_that_differ_between_products_get_no_ratio() -> None:
    res = _results(
        [{"W1": _w1(100.0, digest="aaa")} for _ in range(3)],
        [{"W1": _w1(5000.0, digest="bbb")} for _ in range(3)],
    )
    rate, ans = _rows(res, "W1")
    assert rate.status == "INVALID" and rate.speedup == "-"
    assert "answered differently" in ans.mlflow and "(digest)" in ans.mlflow


def test_w4_compares_result_sets_query_by_query_over_the_queries_both_ran() -> None:
    same = _results(
        [{"W4": _w4(10.0, ["a", "b"], ["p", "q", "r"])}],  # MLflow's loop hit its time cap
        [{"W4": _w4(1.0, ["a", "b", "c"], ["p", "q", "r"])}],
    )
    assert all(r.status != "INVALID" for r in _rows(same, "W4"))
    differ = _results(
        [{"W4": _w4(10.0, ["a", "b"], ["p", "q", "r"])}],
        [{"W4": _w4(1.0, ["a", "X"], ["p", "q", "r"])}],
    )
    rows = _rows(differ, "W4")
    assert [r.status for r in rows if r.target] == ["INVALID", "INVALID", "INVALID"]
    assert "label_digests" in rows[-1].mlflow


def test_an_error_or_a_missing_check_is_invalid() -> None:
    res = _results(
        [{"W1": {"error": "boom"}}, {"W1": _w1(1.0)}],
        [{"W1": {k: v for k, v in _w1(9.0).items() if k != "check"}}, {"W1": _w1(9.0)}],
    )
    v = res["validity"]["sqlite"]["W1"]
    assert not v["valid"]
    assert any("error boom" in p for p in v["problems"])
    assert any("answers not checked" in p for p in v["problems"])


def test_client_checks_catch_wrong_answers() -> None:
    sent = [p for b in client_script.metric_batches(3, 4, 5) for p in b]
    assert client_script.check_w1(sent, list(sent))["ok"]
    assert not client_script.check_w1(sent, sent[:-1])["ok"]
    moved = copy.deepcopy(sent)
    moved[0] = (moved[0][0], moved[0][1], moved[0][2], moved[0][3] + 1)  # another timestamp
    assert not client_script.check_w1(sent, moved)["ok"]
    assert client_script.check_versions([3, 1, 2], 3)["ok"]
    assert not client_script.check_versions([1, 2, 2], 3)["ok"]
    names = [client_script.model_name(i) for i in range(1200, 1300)]
    ok = client_script.check_searches("prefix", ["bench-model-0012"], [names], 2000, 20)
    assert ok["ok"]
    # A name-or-description filter that also matched another model would be caught.
    extra = client_script.check_searches(
        "prefix", ["bench-model-0012"], [[*names[:99], "bench-model-001300"]], 2000, 20
    )
    assert not extra["ok"]


@pytest.mark.parametrize("values", [[1, 2, 3], [3.0, 1.0, 2.0]])
def test_median_tree(values: list[float]) -> None:
    got = answers.median_tree([{"a": {"b": v, "ok": True}} for v in values])
    assert got == {"a": {"b": 2, "ok": True}}
