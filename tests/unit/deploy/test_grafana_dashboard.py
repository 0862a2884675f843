"""deploy/grafana/reelvault-pipeline.json: a dashboard Grafana can import (valid JSON, unique
panel ids, the Prometheus data source as a variable) whose every expression reads series the
services export and is valid PromQL (``promtool``, when installed), and which shows every
family they export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "reelvault-pipeline.json"
METRICS_MODULES = (
    "reelvault_common.runtime.metrics",
    "reelvault_catalog.metrics",
    "reelvault_generator.metrics",
    "reelvault_archiver.metrics",
    "reelvault_gateway.metrics",
    "reelvault_common.storage.supabase_staging",
)
SERIES = re.compile(r"\breelvault_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def families() -> dict[str, set[str]]:
    """Every family the services export -> its series names."""
    for module in METRICS_MODULES:
        importlib.import_module(module)
    return {
        family.name: {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        for family in REGISTRY.collect()
        if family.name.startswith("reelvault_")
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_the_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] == "reelvault-pipeline"
    assert board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_expression_reads_exported_series() -> None:
    exported = set().union(*families().values())
    for expr in expressions():
        read = set(SERIES.findall(expr))
        assert read, f"reads no reelvault series: {expr}"
        assert read <= exported, f"not exported by any service: {sorted(read - exported)}"
        assert expr.count("(") == expr.count(")"), expr


def test_every_exported_family_is_on_the_dashboard() -> None:
    read = {name for expr in expressions() for name in SERIES.findall(expr)}
    missing = [family for family, series in families().items() if not series & read]
    assert missing == []


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make tools` "
                    "installs it)")
    # promtool parses expressions in rule files: one recording rule per panel target.
    rules = [{"record": f"dashboard:target_{index}", "expr": expr}
             for index, expr in enumerate(expressions())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
