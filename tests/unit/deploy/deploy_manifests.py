"""Rendering deploy/k8s and reading the result: shared by the deploy tests.

The overlays are rendered by `kubectl kustomize` (the kustomize built into kubectl), installed
by `make tools`. Without a usable one the tests that need it skip and say why.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The oldest kustomize that understands `labels`, components and regex patch targets as used.
MIN_KUSTOMIZE = (5, 0)

Doc = dict[str, Any]


@functools.cache
def kubectl_problem() -> str | None:
    """None when `kubectl kustomize` can render deploy/k8s, else why not."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl is not installed (`make tools` installs it with apt-get when run as root)"
    result = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    version = json.loads(result.stdout or "{}").get("kustomizeVersion", "")
    found = re.match(r"v(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < MIN_KUSTOMIZE:
        return (f"kubectl's kustomize {version or '(unknown)'} is older than "
                f"v{MIN_KUSTOMIZE[0]}.{MIN_KUSTOMIZE[1]}: install a newer kubectl")
    return None


def require_kubectl() -> None:
    problem = kubectl_problem()
    if problem:
        pytest.skip(problem)


@functools.cache
def render_text(overlay: str) -> str:
    require_kubectl()
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return result.stdout


def render(overlay: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: Doc) -> Doc:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Doc) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def workloads(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet", "CronJob")]


def containers(workload: Doc) -> Iterator[Doc]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a pod's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def is_reelvault_image(image: str) -> bool:
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == "reelvault"
