"""deploy/prometheus/rules.yml: valid for Prometheus (``promtool check rules``), each alert fires
when it should and stays quiet when it should not (``promtool test rules`` over
deploy/prometheus/tests/), the alerts operators rely on exist, and every series a rule reads is
one the services export.

promtool comes from Debian's ``prometheus`` package (``make tools`` installs it); without it the
promtool tests skip and say so. The other checks need nothing but the code.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
METRICS_MODULES = (
    "reelvault_common.runtime.metrics",
    "reelvault_catalog.metrics",
    "reelvault_generator.metrics",
    "reelvault_archiver.metrics",
    "reelvault_gateway.metrics",
)
# What each alert is for; each one is unit-tested in deploy/prometheus/tests/.
REQUIRED_ALERTS = {
    "ReelvaultDbPoolExhausted",  # the catalog's connection pool
    "ReelvaultQuotaAbove80Percent",  # an organization near a limit
    "ReelvaultSlowQueries",  # statements over 1 s
    "ReelvaultBackupNeverSucceeded",  # missing backups: none ever
    "ReelvaultBackupTooOld",  # failed or missing backups: none in 26 h
    "ReelvaultBackupStatusUnknown",  # nobody reports the backup time
    "ReelvaultDeadLetters",  # dead letters present
    "ReelvaultArchiveMarginLow",  # archives finishing with under 10 minutes to spare
    "ReelvaultConsumerLagGrowing",  # a consumer falling behind
}
SERIES = re.compile(r"\breelvault_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def exported_series() -> set[str]:
    """Every series name the services' registries export (a counter as ``_total``, a histogram
    as its ``_bucket``/``_count``/``_sum``)."""
    for module in METRICS_MODULES:
        importlib.import_module(module)
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("reelvault_")
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make tools` "
                    "installs it)")
    return found


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_every_alert_behaves_as_its_unit_tests_say() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    done = subprocess.run([promtool(), "test", "rules", *map(str, RULE_TESTS)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_operators_rely_on_are_there_and_tested() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        # A test that only says "quiet" proves nothing about firing.
        if case.get("exp_alerts")
    }
    assert alerts <= tested, f"alerts never seen firing in a test: {sorted(alerts - tested)}"
    for rule in rules():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_rules_read_only_exported_series() -> None:
    exported = exported_series()
    read = {name for rule in rules() for name in SERIES.findall(rule["expr"])}
    assert read, "the rules read no reelvault series"
    assert read <= exported, f"not exported by any service: {sorted(read - exported)}"
