"""Run summaries of the scheduled tasks: the log line and the metrics."""

from __future__ import annotations

from core.platform.runs import RunSummary, prometheus_lines


def test_run_summary_line_and_metrics() -> None:
    summary = RunSummary("reconcile")
    summary.found.update({"orphan": 2, "stuck": 1})
    summary.acted["delete"] += 1
    assert summary.line() == ("reconcile: found 3 (orphan 2, stuck 1); did 1 (delete 1); 0 errors")
    lines = prometheus_lines(
        {"reconcile": {"last_run": "5", "found_orphan_total": "2", "errors_total": "0"}}
    )
    assert 'rachel_cloud_cron_found_total{task="reconcile",kind="orphan"} 2' in lines
    assert 'rachel_cloud_cron_last_run_timestamp_seconds{task="reconcile"} 5' in lines
