"""checkov over the rendered manifests: no failed check; every check skipped on purpose says why.

checkov lives in a venv of its own (`make tools`: its pinned dependencies clash with the
project's). A finding is fixed in the manifest or skipped on the object it concerns with an
annotation `checkov.io/skip-<what>: "CKV_K8S_<n>=<reason>"` (annotations, not comments: comments
do not survive rendering).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_manifests import OVERLAYS, ROOT, render, render_text


def checkov_binary() -> str:
    beside = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    found = str(beside) if beside.exists() else shutil.which("checkov")
    if found is None:
        pytest.skip("checkov is not installed (`make tools` creates .tools/checkov)")
    return found


def test_checkov_finds_nothing_unexplained(tmp_path: Path) -> None:
    checkov = checkov_binary()
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(render_text(overlay))
    result = subprocess.run(
        [checkov, "--directory", str(tmp_path), "--framework", "kubernetes", "--output", "json",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=280, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOG_LEVEL": "WARNING"},
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']}"
              for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20 and reason != "No comment provided", skipped["resource"]


def test_skip_annotations_parse_as_check_and_reason() -> None:
    # checkov splits an annotation's value at "=": a second one would break its parsing.
    for overlay in OVERLAYS:
        for doc in render(overlay):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert check.startswith("CKV"), value
                    assert reason and "=" not in reason, value
