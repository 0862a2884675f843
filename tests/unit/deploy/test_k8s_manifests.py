"""deploy/k8s rendered per overlay and checked against the rules production depends on.

Built-in kinds are validated offline against the Kubernetes schemas (strictly: unknown fields
fail); KEDA's ScaledObject is a CRD, so its fields are checked here.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import kubernetes_validate
import pytest
from deploy_manifests import (
    K8S,
    OVERLAYS,
    ROOT,
    Doc,
    containers,
    is_reelvault_image,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    render,
    selector_matches,
    workloads,
)
from kubernetes_validate.utils import latest_version
from reelvault_common.messaging.topology import Topology

SERVICES = {
    "gateway": "reelvault_gateway",
    "generator": "reelvault_generator",
    "archiver": "reelvault_archiver",
    "catalog": "reelvault_catalog",
}
NON_HTTP = ("generator", "archiver", "catalog")
SECRET_NAME = "reelvault-secrets"
SECRET_KEYS = {
    "OPENAI_API_KEY",
    "REELVAULT_STORAGE_SIGNING_KEY",
    "REELVAULT_SESSION_SECRET",
    "SUPABASE_SERVICE_ROLE_KEY",
    "DATABASE_URL",
}
# Only the dev overlay's own PostgreSQL needs its password.
DEV_SECRET_KEYS = SECRET_KEYS | {"POSTGRES_PASSWORD"}
SECRET_LIKE = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|CREDENTIALS|DATABASE_URL)$")
HEALTHCHECK = ["python", "-m", "reelvault_common.messaging.healthcheck"]
# The oldest Kubernetes the manifests target, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", latest_version())
CRD_GROUPS = {"keda.sh"}


def app_name(labels: dict[str, str]) -> str:
    return labels.get("app.kubernetes.io/name", "")


def config_map(docs: list[Doc]) -> dict[str, str]:
    maps = [doc for doc in of_kind(docs, "ConfigMap")
            if doc["metadata"]["name"].startswith("reelvault-config")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def reelvault_workloads(docs: list[Doc]) -> list[Doc]:
    return [w for w in workloads(docs)
            if any(is_reelvault_image(c["image"]) for c in containers(w))]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def docs(overlay: str) -> list[Doc]:
    return render(overlay)


# --- schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_validate_strictly(docs: list[Doc], version: str) -> None:
    problems = []
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError,
                kubernetes_validate.SchemaNotFoundError) as exc:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            problems.append(f"{where}: {getattr(exc, 'message', exc)}")
    assert not problems, "\n".join(problems)


def test_only_known_custom_kinds(docs: list[Doc]) -> None:
    custom = {(doc["apiVersion"], doc["kind"]) for doc in docs
              if doc["apiVersion"].split("/")[0] in CRD_GROUPS}
    assert custom <= {("keda.sh/v1alpha1", "ScaledObject")}


# --- workloads -----------------------------------------------------------------------------


def test_the_four_services_run_from_one_image(docs: list[Doc], overlay: str) -> None:
    images = set()
    for name, module in SERVICES.items():
        deployment = named(docs, "Deployment", name)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None, module
        images.add(container["image"])
    assert len(images) == 1, images
    (image,) = images
    assert is_reelvault_image(image)
    tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    assert tag and tag != "latest", image
    for workload in reelvault_workloads(docs):
        for container in containers(workload):
            assert container["image"] == image, workload["metadata"]["name"]


def test_every_container_is_locked_down(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("enableServiceLinks") is False, where
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), where
        pod_security = spec.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, where
        for container in containers(workload):
            here = f"{where}/{container['name']}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot") is True, here
            assert security.get("readOnlyRootFilesystem") is True, here
            assert security.get("allowPrivilegeEscalation") is False, here
            assert not security.get("privileged"), here
            assert security.get("capabilities", {}).get("drop") == ["ALL"], here
            assert not security.get("capabilities", {}).get("add"), here
            seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, here
            run_as = security.get("runAsUser", pod_security.get("runAsUser"))
            assert isinstance(run_as, int) and run_as > 0, here
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resources.get(bound, {}).get(resource), f"{here}: {bound}.{resource}"


def test_reelvault_containers_write_only_where_the_image_made_room(docs: list[Doc]) -> None:
    # The root filesystem is read-only: every mount is /tmp (an emptyDir) or a data folder the
    # Dockerfile creates and gives to the image's user.
    dockerfile = (ROOT / "Dockerfile").read_text()
    for workload in reelvault_workloads(docs):
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, workload["metadata"]["name"]
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            for path in mounts:
                if path != "/tmp":
                    assert re.search(rf"install -d [^\n]*{re.escape(path)}\b", dockerfile), path


def test_long_running_containers_have_all_three_probes(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        if workload["kind"] == "CronJob":
            continue
        for container in containers(workload):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{workload['metadata']['name']}: {probe}"


def test_probes_use_the_services_own_health_checks(docs: list[Doc]) -> None:
    (gateway,) = named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    http_port = {p["name"]: p["containerPort"] for p in gateway["ports"]}["http"]
    assert http_port == 8000
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert importlib.util.find_spec("reelvault_common.messaging.healthcheck") is not None
    for name, target in (("generator", "nats"), ("archiver", "nats"), ("catalog", "catalog")):
        (container,) = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["exec"]["command"] == [*HEALTHCHECK, target], name
        # Liveness stays local to the process: a NATS outage must not restart every pod.
        assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_metrics_are_declared_for_prometheus(docs: list[Doc]) -> None:
    assert config_map(docs)["REELVAULT_METRICS_PORT"] == "9100"
    # Scraped (and probed) on the pod's address, not on loopback.
    assert config_map(docs)["REELVAULT_METRICS_HOST"] == "0.0.0.0"
    for name in (*NON_HTTP, "gateway"):
        deployment = named(docs, "Deployment", name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port = ports["http"] if name == "gateway" else ports["metrics"]
        assert port == (8000 if name == "gateway" else 9100)
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_deployment_has_a_disruption_budget(docs: list[Doc]) -> None:
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        matching = [b for b in budgets
                    if selector_matches(b["spec"]["selector"], pod_labels(deployment))]
        assert len(matching) == 1, deployment["metadata"]["name"]
        # Never blocks a node drain, whatever the replica count.
        assert matching[0]["spec"].get("maxUnavailable") == 1


def test_every_deployment_selects_its_own_pods(docs: list[Doc]) -> None:
    for deployment in of_kind(docs, "Deployment"):
        assert selector_matches(deployment["spec"]["selector"], pod_labels(deployment))


# --- configuration and secrets --------------------------------------------------------------


def test_no_secret_value_in_any_manifest(docs: list[Doc], overlay: str) -> None:
    assert not of_kind(docs, "Secret"), "secrets are created out of band (README.md)"
    allowed = DEV_SECRET_KEYS if overlay == "dev" else SECRET_KEYS
    for key, value in config_map(docs).items():
        assert not SECRET_LIKE.search(key), key
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), key  # credentials in a URL
    referenced = set()
    for workload in workloads(docs):
        for container in containers(workload):
            for env in container.get("env", []):
                where = f"{workload['metadata']['name']}: {env['name']}"
                if SECRET_LIKE.search(env["name"]):
                    assert "value" not in env, where
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET_NAME, where
                    assert ref["key"] in allowed, where
                    referenced.add(ref["key"])
                elif "valueFrom" in env and "secretKeyRef" in env["valueFrom"]:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET_NAME and ref["key"] in allowed, where
                    referenced.add(ref["key"])
    assert referenced == allowed


def test_the_secret_is_documented() -> None:
    readme = (K8S / "README.md").read_text()
    assert SECRET_NAME in readme
    for key in DEV_SECRET_KEYS:
        assert key in readme, key


def test_database_url_goes_to_the_catalog_only(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        for container in containers(workload):
            keys = {env.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
                    for env in container.get("env", [])}
            if "DATABASE_URL" in keys:
                assert app_name(pod_labels(workload)) in ("catalog", "backup")


def test_services_share_one_config_and_namespace(docs: list[Doc]) -> None:
    config = config_map(docs)
    assert config["REELVAULT_NAMESPACE"] == "reelvault"
    assert config["REELVAULT_LOG_FORMAT"] == "json"
    for name in SERVICES:
        (container,) = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        (source,) = container["envFrom"]
        assert source["configMapRef"]["name"].startswith("reelvault-config")


# --- network policies -----------------------------------------------------------------------


def policies_for(docs: list[Doc], labels: dict[str, str], direction: str) -> list[Doc]:
    return [p for p in of_kind(docs, "NetworkPolicy")
            if direction in p["spec"].get("policyTypes", [])
            and selector_matches(p["spec"]["podSelector"], labels)]


def allowed_ports(docs: list[Doc], labels: dict[str, str], direction: str) -> set[int]:
    rules_key = "egress" if direction == "Egress" else "ingress"
    ports: set[int] = set()
    for policy in policies_for(docs, labels, direction):
        for rule in policy["spec"].get(rules_key, []):
            ports.update(int(port["port"]) for port in rule["ports"])
    return ports


def test_everything_is_denied_unless_allowed(docs: list[Doc]) -> None:
    deny = [p for p in of_kind(docs, "NetworkPolicy")
            if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(deny) == 1
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            # Every rule names its ports: none opens everything.
            assert rule.get("ports"), policy["metadata"]["name"]


def test_egress_by_workload(docs: list[Doc], overlay: str) -> None:
    egress = {app_name(pod_labels(w)): allowed_ports(docs, pod_labels(w), "Egress")
              for w in workloads(docs)}
    for name, ports in egress.items():
        assert {53, 4222} <= ports, name  # DNS and NATS: everyone
    postgres_clients = {name for name, ports in egress.items() if 5432 in ports}
    assert postgres_clients == ({"catalog", "backup"} if overlay == "prod" else {"catalog"})
    https_clients = {name for name, ports in egress.items() if 443 in ports}
    assert {"generator", "archiver"} <= https_clients
    assert "catalog" not in https_clients
    if overlay == "dev":
        assert 8100 in egress["generator"] and 8100 in egress["archiver"]


def test_only_the_gateway_takes_traffic_from_outside(docs: list[Doc]) -> None:
    open_to = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            outside = not peers or any("ipBlock" in peer for peer in peers)
            if outside:
                for workload in workloads(docs):
                    if selector_matches(policy["spec"]["podSelector"], pod_labels(workload)):
                        open_to.add(app_name(pod_labels(workload)))
    assert open_to == {"gateway"}
    gateway = named(docs, "Deployment", "gateway")
    assert 8000 in allowed_ports(docs, pod_labels(gateway), "Ingress")
    for name in NON_HTTP:
        labels = pod_labels(named(docs, "Deployment", name))
        assert allowed_ports(docs, labels, "Ingress") == {9100}, name  # metrics scrape only


# --- scaling -------------------------------------------------------------------------------

SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod",
                      "initialCooldownPeriod", "idleReplicaCount", "minReplicaCount",
                      "maxReplicaCount", "fallback", "advanced", "triggers"}
NATS_TRIGGER_METADATA = {"natsServerMonitoringEndpoint", "account", "stream", "consumer",
                         "lagThreshold", "activationLagThreshold", "useHttps"}


def test_gateway_scales_on_cpu(docs: list[Doc]) -> None:
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "gateway"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_autoscaled_deployments_leave_replicas_to_the_scaler(docs: list[Doc]) -> None:
    scaled = {hpa["spec"]["scaleTargetRef"]["name"]
              for hpa in of_kind(docs, "HorizontalPodAutoscaler")}
    scaled |= {so["spec"]["scaleTargetRef"]["name"] for so in of_kind(docs, "ScaledObject")}
    for name in scaled:
        assert "replicas" not in named(docs, "Deployment", name)["spec"], name


def test_prod_scales_generator_and_archiver_on_consumer_lag() -> None:
    docs = render("prod")
    topology = Topology(namespace=config_map(docs)["REELVAULT_NAMESPACE"])
    consumers = {"generator": topology.durable("generator", "requests"),
                 "archiver": topology.durable("archiver", "completed")}
    assert consumers == {"generator": "reelvault-generator-requests",
                         "archiver": "reelvault-archiver-completed"}
    objects = of_kind(docs, "ScaledObject")
    assert {so["spec"]["scaleTargetRef"]["name"] for so in objects} == set(consumers)
    for so in objects:
        spec: dict[str, Any] = so["spec"]
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
        target = spec["scaleTargetRef"]
        assert set(target) <= {"apiVersion", "kind", "name", "envSourceContainerName"}
        named(docs, "Deployment", target["name"])
        # At least one replica always runs: the same processes hold other consumers.
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert set(trigger) <= {"type", "metadata", "name", "authenticationRef", "metricType",
                                "useCachedMetrics"}
        assert trigger["type"] == "nats-jetstream"
        metadata = trigger["metadata"]
        assert set(metadata) <= NATS_TRIGGER_METADATA, set(metadata) - NATS_TRIGGER_METADATA
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        assert metadata["account"] == "$G"
        assert metadata["stream"] == topology.stream == "REELVAULT_VIDEOS"
        assert metadata["consumer"] == consumers[target["name"]]
        assert re.fullmatch(r"[a-z0-9.-]+:\d+", metadata["natsServerMonitoringEndpoint"])
        assert int(metadata["lagThreshold"]) > 0


# --- environments --------------------------------------------------------------------------


def test_the_simulator_runs_in_dev_only() -> None:
    dev, prod = render("dev"), render("prod")
    named(dev, "Deployment", "provider-sim")
    assert config_map(dev)["OPENAI_BASE_URL"].startswith("http://provider-sim:")
    assert not [d for d in prod if "provider-sim" in d["metadata"]["name"]]
    assert config_map(prod)["OPENAI_BASE_URL"].startswith("https://")


def test_prod_runs_no_broker_or_database_of_its_own() -> None:
    prod = render("prod")
    assert not of_kind(prod, "StatefulSet")
    config = config_map(prod)
    assert config["NATS_URL"].startswith("nats://nats.nats.svc")
    assert config["REELVAULT_STREAM_REPLICAS"] == "3"
    assert config["REELVAULT_STORAGE_BACKEND"] == "supabase"


def test_dev_runs_nats_and_postgres_in_the_namespace() -> None:
    dev = render("dev")
    assert {s["metadata"]["name"] for s in of_kind(dev, "StatefulSet")} == {"nats", "postgres"}
    for statefulset in of_kind(dev, "StatefulSet"):
        assert statefulset["spec"]["replicas"] == 1
    assert config_map(dev)["NATS_URL"] == "nats://nats:4222"
    assert config_map(dev)["REELVAULT_STORAGE_BACKEND"] == "filesystem"
    assert not of_kind(dev, "CronJob")


def test_prod_backs_up_the_catalog_daily() -> None:
    prod = render("prod")
    (cronjob,) = of_kind(prod, "CronJob")
    minute, hour, *daily = cronjob["spec"]["schedule"].split()
    assert daily == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = containers(cronjob)
    assert container["args"] == ["reelvault", "backup", "create", "--keep", "14"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"].startswith("reelvault-config")
    assert {"NATS_URL", "REELVAULT_STORAGE_BACKEND"} <= set(config_map(prod))
    backup_dir = env["REELVAULT_BACKUP_DIR"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == backup_dir]
    volumes = {v["name"]: v for v in pod_spec(cronjob)["volumes"]}
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "reelvault-backups"
    named(prod, "PersistentVolumeClaim", "reelvault-backups")


def test_every_object_is_in_the_overlays_namespace(docs: list[Doc], overlay: str) -> None:
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]
