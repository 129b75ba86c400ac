"""The deployment files: the Kubernetes manifests render (`kubectl kustomize`) and pass
the API schemas (kubernetes-validate), hold the promises the README makes about them;
docker-compose.yml is valid with and without its monitoring profile; what they all
name (ports, metrics, the build backend) exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from prometheus_client import REGISTRY

import counter_worker.metrics
import mail_sender.metrics
import petition_api.metrics
from countersign_core.status import StatusCollector
from tests.support.processes import countersign
from tests.support.servers import Servers, throwaway_database

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = ROOT / "deploy" / "overlays" / "example"
# The oldest Kubernetes the manifests promise to fit (README), and the newest known.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())

Manifest = dict[str, Any]


def tool(name: str) -> str:
    """A command the deployment checks need: missing is a skip, but a failure in CI."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(OVERLAY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    [found] = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    return found


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            yield m["metadata"]["name"], m["spec"]["template"]


def test_the_manifests_pass_the_kubernetes_schemas(manifests: list[Manifest]) -> None:
    kinds = {m["kind"] for m in manifests}
    assert kinds >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "Ingress",
    }
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            # strict: an unknown field (a typo) fails, as does a kind without a schema.
            kubernetes_validate.validate(manifest, version, strict=True)


def test_every_pod_is_non_root_read_only_bounded_and_probed(manifests: list[Manifest]) -> None:
    for name, template in pod_specs(manifests):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert set(container["resources"]) == {"requests", "limits"}, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where  # writable /tmp
            secrets = volumes[mounts["/run/secrets/countersign"]]
            assert secrets["secret"]["secretName"] == "countersign-secrets", where
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            ports = [p["containerPort"] for c in spec["containers"] for p in c["ports"]]
            assert port in ports, name
    for deployment in of_kind(manifests, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert {"livenessProbe", "readinessProbe"} <= set(container), container["name"]


def test_secrets_come_from_files_never_from_the_config(manifests: list[Manifest]) -> None:
    [config] = of_kind(manifests, "ConfigMap")
    data = config["data"]
    secret = ("DATABASE_URL", "REDIS_URL", "COUNTERSIGN_SECRET_KEY", "SMTP_URL")
    for variable in (*secret, "COUNTERSIGN_LOG_SIGNING_KEY"):
        assert variable not in data
        assert data[f"{variable}_FILE"].startswith("/run/secrets/countersign/")
    for _name, template in pod_specs(manifests):
        for container in template["spec"]["containers"]:
            assert "env" not in container  # everything comes from the ConfigMap and files


def test_the_topology(manifests: list[Manifest]) -> None:
    api = named(manifests, "Deployment", "countersign-api")
    assert "replicas" not in api["spec"]  # the autoscaler's
    [hpa] = of_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "countersign-api"
    assert hpa["spec"]["minReplicas"] >= 2
    assert named(manifests, "Deployment", "countersign-worker")["spec"]["replicas"] >= 2
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budgets = [
            pdb
            for pdb in of_kind(manifests, "PodDisruptionBudget")
            if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(budgets) == 1, deployment["metadata"]["name"]
    [ingress] = of_kind(manifests, "Ingress")
    [rule] = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = named(manifests, "Service", backend["name"])
    assert backend["port"]["name"] in [p["name"] for p in service["spec"]["ports"]]
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()


def test_new_pods_wait_for_the_migrations_job(manifests: list[Manifest]) -> None:
    [job] = of_kind(manifests, "Job")
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["countersign", "migrate"]
    for deployment in of_kind(manifests, "Deployment"):
        [wait] = deployment["spec"]["template"]["spec"]["initContainers"]
        assert "countersign migrate --check" in " ".join(wait["command"])


async def test_migrate_check_says_whether_anything_is_pending(servers: Servers) -> None:
    async with throwaway_database(servers) as url:
        env = {"DATABASE_URL": url}
        before = countersign("migrate", "--check", env=env)
        assert before.returncode == 1
        assert "001_core.sql" in before.stdout
        assert countersign("migrate", env=env).returncode == 0
        after = countersign("migrate", "--check", env=env)
        assert (after.returncode, after.stdout) == (0, "every migration is applied\n")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DELETE FROM schema_migrations WHERE name = '010_heartbeats.sql'")
        finally:
            await conn.close()
        one = countersign("migrate", "--check", env=env)
        assert (one.returncode, one.stdout) == (1, "1 migration(s) pending: 010_heartbeats.sql\n")


# -- docker-compose.yml ---------------------------------------------------------------------

COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "ci-only",
    "COUNTERSIGN_SECRET_KEY": "ci-only-not-a-secret-0123456789abcdef",
    "SMTP_URL": "smtp://relay.example.org:587?starttls=true",
    "COUNTERSIGN_MAIL_FROM": "petitions@example.org",
    "COUNTERSIGN_PUBLIC_URL": "https://sign.example.org",
    "COUNTERSIGN_LOG_SIGNING_KEY": "Y2ktb25seS1ub3QtYS1zZWNyZXQtMDEyMzQ1Njc4OWE=",
}


def compose_config(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    return subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "COUNTERSIGN_LOG_SIGNING_KEY"])
def test_compose_needs_a_postgres_password_and_a_log_signing_key(variable: str) -> None:
    refused = compose_config(env={k: v for k, v in COMPOSE_ENV.items() if k != variable})
    assert refused.returncode != 0
    assert f"set {variable}" in refused.stderr


def test_compose_pins_images_probes_workers_and_rotates_logs() -> None:
    result = compose_config("--profile", "monitoring", env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", service["image"]), name
        assert service["logging"]["options"]["max-size"], name
        assert service.get("mem_limit"), name
    for name, port_variable in (
        ("worker", "COUNTERSIGN_WORKER_METRICS_PORT"),
        ("mailer", "COUNTERSIGN_MAIL_METRICS_PORT"),
    ):
        port = services[name]["environment"][port_variable]
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, name


# -- monitoring: what the configs name exists ------------------------------------------------


def metric_names() -> set[str]:
    modules = (petition_api.metrics, counter_worker.metrics, mail_sender.metrics)
    assert modules  # imported for their metrics, registered in REGISTRY
    names = {metric.name for metric in REGISTRY.collect()}
    names |= {family.name for family in StatusCollector("postgresql://unused").describe()}
    return names


def test_the_dashboard_shows_metrics_that_exist() -> None:
    dashboard = json.loads(
        (ROOT / "monitoring" / "grafana" / "dashboards" / "countersign.json").read_text()
    )
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"countersign_\w+", expr)
    }
    assert len(used) > 10
    assert used <= metric_names(), used - metric_names()


def test_prometheus_scrapes_every_process_where_it_serves() -> None:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    scraped = {
        job["job_name"]: (sd["names"][0], sd["port"])
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
    }
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-countersign-env"]
    assert set(scraped.values()) == {
        ("api", int(env["COUNTERSIGN_METRICS_PORT"])),
        ("worker", int(env["COUNTERSIGN_WORKER_METRICS_PORT"])),
        ("mailer", int(env["COUNTERSIGN_MAIL_METRICS_PORT"])),
    }


# -- the image's build ----------------------------------------------------------------------


def test_the_build_backend_is_pinned_with_hashes() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [wanted] = [Requirement(r) for r in pyproject["build-system"]["requires"]]
    lock = (ROOT / "build-requirements.lock").read_text()
    pins = dict(re.findall(r"^([\w.-]+)==(\S+) \\$", lock, re.M))
    assert wanted.specifier.contains(pins[wanted.name]), pins
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", lock)) >= len(pins)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r build-requirements.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile  # so pip fetches no other backend
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", base)
