"""The deploy files (compose, Kubernetes, Grafana dashboard, alert rules): they parse, and they only name
metrics, labels and ``ORCH_*`` settings that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from orchestrator import metrics
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"
DASHBOARDS = ROOT / "deploy" / "dashboards"
DASHBOARD = DASHBOARDS / "orchestrator.json"
ALERTS = DASHBOARDS / "alerts.yml"

YAML_FILES = sorted(
    p for folder in (COMPOSE, K8S, DASHBOARDS) for p in folder.rglob("*") if p.suffix in {".yml", ".yaml"}
)
CONFIG_FILES = sorted(p for folder in (COMPOSE, K8S) for p in folder.rglob("*") if p.is_file())
# Manifests kustomization.yaml leaves out on purpose: a template, and a resource that needs the Operator's CRDs.
K8S_OPTIONAL = {"secret.example.yaml", "podmonitor.yaml"}

# The series each metric type exposes: counters as name_total, histograms as _bucket/_sum/_count.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# What Prometheus adds itself: the `up` series of every target, and the target labels of every series.
SCRAPE_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}

PROMQL_WORDS = frozenset(
    {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"}
    | {"rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent", "absent_over_time"}
    | {"vector", "scalar", "clamp", "clamp_min", "clamp_max", "abs", "ceil", "floor", "round", "time", "timestamp"}
    | {"label_replace", "label_join", "sort", "sort_desc", "changes", "resets", "predict_linear"}
    | {"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time"}
    | {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"inf", "nan"}
)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
MATCHERS = re.compile(r"\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RANGE = re.compile(r"\[[^\]]*\]")
IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")
ORCH_NAME = re.compile(r"\bORCH_[A-Z0-9_]+\b")
COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


# ----------------------------------------------------------------------------- helpers


def exposed_series() -> set[str]:
    """Every series name this process can expose (a labelled counter shows no sample until first used)."""
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def series_labels() -> dict[str, set[str]]:
    """Series name -> its label names, for the metrics of ``orchestrator.metrics``."""
    labels: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            names = set(metric._labelnames)  # no public accessor in prometheus_client
            for family in metric.describe():
                for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
                    labels[family.name + suffix] = names | ({"le"} if suffix == "_bucket" else set())
    return labels


def parse(expr: str) -> tuple[set[str], set[str], set[str]]:
    """The metric names, the label names, and the grouping labels of a PromQL expression."""
    without_strings = STRING.sub('""', expr)
    grouping = {label.strip() for group in GROUPING.findall(without_strings) for label in group.split(",")}
    grouping.discard("")
    labels = set(grouping)
    for matchers in MATCHERS.findall(without_strings):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    rest = RANGE.sub(" ", GROUPING.sub(" ", MATCHERS.sub(" ", without_strings)))
    names = {word for word in IDENTIFIER.findall(rest) if word not in PROMQL_WORDS}
    return names, labels, grouping


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[tuple[str, str, str]]:
    """(where, PromQL, legend) for every dashboard target, dashboard variable and alert rule."""
    found = []
    board = dashboard()
    for panel in panels(board):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"], target.get("legendFormat", "")))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: expected label_values(<selector>, <label>)"
            found.append((f"variable {variable['name']}", f"group by ({match[2]}) ({match[1]})", ""))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule.get('alert') or rule.get('record')}", rule["expr"], ""))
    return found


def load_all(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in K8S.glob("*.yaml"):
        for doc in load_all(path):
            if doc.get("kind") and doc.get("metadata", {}).get("name"):
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def interpolate(value: object) -> str:
    """Compose's ${VAR:-default} with the defaults; ${VAR:?message} as a placeholder value."""

    def one(match: re.Match[str]) -> str:
        _, operator, argument = match.groups()
        return {"-": argument or "", "?": "placeholder"}.get(operator or "", "")

    return COMPOSE_VARIABLE.sub(one, str(value))


def settings_from(env: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as a container with this environment (and nothing else of ours) would read them."""
    for name in list(os.environ):
        if name.startswith("ORCH_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def compose_orchestrator_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the orchestrator image."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def container(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses_into_mappings(path):
    docs = load_all(path)
    assert docs, "empty file"
    assert all(isinstance(doc, dict) for doc in docs)


def test_the_dashboard_is_json_with_unique_panel_ids_and_a_datasource_variable():
    board = dashboard()
    all_panels = panels(board)
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


# ----------------------------------------------------------------------------- metrics


def test_the_dashboard_and_alerts_only_use_metrics_that_exist():
    known = exposed_series() | SCRAPE_SERIES
    used = {name for _, expr, _ in queries() for name in parse(expr)[0]}
    assert "orchestrator_events_consumed_total" in used, "the query parser found nothing"
    missing = sorted(f"{where}: {name}" for where, expr, _ in queries() for name in parse(expr)[0] - known)
    assert not missing, "metrics not registered by orchestrator.metrics:\n" + "\n".join(missing)


def test_the_dashboard_and_alerts_only_use_labels_their_metrics_have():
    labels = series_labels()
    problems = []
    for where, expr, _ in queries():
        names, used, _ = parse(expr)
        allowed = TARGET_LABELS.union(*(labels.get(name, set()) for name in names))
        problems += [f"{where}: label {label!r} not on {sorted(names)}" for label in sorted(used - allowed)]
    assert not problems, "\n".join(problems)


def test_legends_only_name_labels_the_query_keeps():
    problems = []
    for where, expr, legend in queries():
        grouping = parse(expr)[2]
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            if label not in grouping:
                problems.append(f"{where}: legend {{{{{label}}}}} but the query keeps only {sorted(grouping)}")
    assert not problems, "\n".join(problems)


def test_every_alert_has_a_severity_a_summary_and_a_description():
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_timer_lateness_alert_does_not_promise_firings_in_event_time():
    """With ORCH_CLOCK=event a wait fires as of its due time and the lateness histogram is not
    observed at all (agents/journeys.py), so the alert cannot fire there: it must not say so."""
    rules = {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    assert "ORCH_CLOCK=event" not in rules["OrchestratorTimerLatenessHigh"]["annotations"]["description"]


# ----------------------------------------------------------------------------- settings


def test_every_orch_variable_in_compose_and_kubernetes_files_is_a_setting():
    settings = {f"ORCH_{field.upper()}" for field in Settings.model_fields}
    named = {(path.relative_to(ROOT), name) for path in CONFIG_FILES for name in ORCH_NAME.findall(path.read_text())}
    assert len(named) > 20, "expected the deploy files to name ORCH_* settings"
    unknown = sorted(f"{path}: {name}" for path, name in named if name not in settings)
    assert not unknown, "not a field of orchestrator.settings.Settings:\n" + "\n".join(unknown)


@pytest.mark.parametrize("service", sorted(compose_orchestrator_services()))
def test_each_compose_orchestrator_service_gets_valid_settings(service, monkeypatch):
    env = {name: interpolate(value) for name, value in compose_orchestrator_services()[service]["environment"].items()}
    settings = settings_from(env, monkeypatch)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.redis_url.startswith("redis://redis:")


def test_compose_workers_listen_beyond_loopback_and_prometheus_scrapes_their_port(monkeypatch):
    worker = compose()["services"]["worker"]
    settings = settings_from({k: interpolate(v) for k, v in worker["environment"].items()}, monkeypatch)
    assert settings.web_host == "0.0.0.0"
    assert str(settings.data_dir).startswith(worker["volumes"][0])
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["orchestrator-worker"]["dns_sd_configs"][0]["port"] == settings.web_port
    assert 'job="orchestrator-worker"' in ALERTS.read_text()


def test_compose_mounts_and_the_dockerfile_copies_only_paths_that_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
    for line in (COMPOSE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile: COPY {source}"


def test_the_kubernetes_config_gives_valid_settings_that_match_the_pods(monkeypatch):
    objects = k8s_objects()
    env = dict(objects[("ConfigMap", "orchestrator-config")]["data"])
    env.update(objects[("Secret", "orchestrator-secrets")]["stringData"])
    settings = settings_from(env, monkeypatch)
    assert settings.web_host == settings.api_host == "0.0.0.0"

    workers = objects[("StatefulSet", "orchestrator-worker")]["spec"]
    assert workers["replicas"] <= settings.partitions, "workers beyond ORCH_PARTITIONS would sit idle"
    worker = container(objects, "StatefulSet", "orchestrator-worker")
    assert worker["ports"][0]["containerPort"] == settings.web_port
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/metrics"
    state = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}["state"]
    assert str(settings.data_dir).startswith(state + "/")
    assert [t["metadata"]["name"] for t in workers["volumeClaimTemplates"]] == ["state"]

    api = container(objects, "Deployment", "orchestrator-api")
    assert api["ports"][0]["containerPort"] == settings.api_port
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    secret_keys = {e["valueFrom"]["secretKeyRef"]["key"] for c in (worker, api) for e in c["env"]}
    assert secret_keys <= set(objects[("Secret", "orchestrator-secrets")]["stringData"])


def test_every_setting_the_readme_says_to_set_for_kubernetes_is_in_the_configmap_or_the_secret():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### On Kubernetes", 1)[1].split("\n## ", 1)[0]
    objects = k8s_objects()
    keys = set(objects[("ConfigMap", "orchestrator-config")]["data"])
    keys |= set(objects[("Secret", "orchestrator-secrets")]["stringData"])
    named = set(ORCH_NAME.findall(section))
    assert "ORCH_KAFKA_BOOTSTRAP" in named, "the section names the settings to change"
    assert not sorted(named - keys), "the README says to set these, but no Kubernetes file has them"


def test_the_kustomization_lists_every_manifest_but_the_optional_ones():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests - K8S_OPTIONAL


# ----------------------------------------------------------------------------- promtool

promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make tools)")


def run(*args: str, cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_promtool_accepts_the_alert_rules_and_their_unit_tests():
    run("promtool", "check", "rules", ALERTS.name, cwd=DASHBOARDS)
    run("promtool", "test", "rules", "alerts.test.yml", cwd=DASHBOARDS)


@promtool
def test_promtool_accepts_the_compose_prometheus_config(tmp_path):
    # Laid out as in the container: prometheus.yml with alerts.yml beside it.
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    run("promtool", "check", "config", "prometheus.yml", cwd=tmp_path)
