"""The Helm chart, rendered and linted by the real Helm library (helm-python-sdk embeds it),
so CI needs neither a cluster nor a helm binary.

Each test renders the chart with some values and checks the objects a cluster would get:
kinds, the hardened pod, RBAC verbs exactly as the controller needs them, the IRSA
annotation, and that bad values are refused by values.schema.json before anything renders.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="pip install -r tests/python/requirements.txt")

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "checkpoint-autoscaler"
RELEASE = "ca"
NAMESPACE = "flink-system"
FULLNAME = "ca-checkpoint-autoscaler"

# The only rules the controller needs on budgets and Events (see templates/_helpers.tpl).
BUDGET_RULES = [
    {
        # patch: the controller's finalizer (metadata.finalizers), nothing else.
        "apiGroups": ["checkpoint-autoscaler.dev"],
        "resources": ["checkpointbudgets"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["checkpoint-autoscaler.dev"],
        "resources": ["checkpointbudgets/status"],
        "verbs": ["patch"],
    },
    {
        "apiGroups": ["checkpoint-autoscaler.dev"],
        "resources": ["checkpointbudgets/finalizers"],
        "verbs": ["update"],
    },
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]


def lease_rules(lease: str) -> list[dict[str, Any]]:
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
    ]


# Every documented switch in values.yaml, each rendered and linted on its own.
SWITCHES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-replica": {"replicaCount": 1},
    "single-replica-no-leader-election": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "irsa": {"serviceAccount": {"roleArn": "arn:aws:iam::111122223333:role/checkpoint-autoscaler"}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "flink-scaler"}},
    "aws-region-and-endpoint": {
        "aws": {"region": "eu-west-1", "endpointUrl": "http://checkpoint-autoscaler-emulator:4566"}
    },
    "aws-account-id": {"aws": {"accountId": "111122223333"}},
    "text-logs-and-interval": {"controller": {"logFormat": "text", "interval": "30s", "logLevel": "debug"}},
    "tenancy-allow-list": {
        "controller": {
            "tenancy": {
                "mode": "allow-list",
                "allowList": {
                    "namespaces": {
                        "streaming": {
                            "applications": [
                                "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders-*",
                                "arn:aws:kinesisanalytics:*:111122223333:application/payments",
                            ],
                            "roleArns": ["arn:aws:iam::111122223333:role/flink-scaler"],
                        }
                    }
                },
            }
        }
    },
    # Tag tenancy with the roles a namespace may name in spec.application.roleArn.
    "tenancy-tag-with-roles": {
        "controller": {
            "tenancy": {
                "mode": "tag",
                "allowList": {
                    "namespaces": {"streaming": {"roleArns": ["arn:aws:iam::111122223333:role/flink-scaler"]}}
                },
            }
        }
    },
    "rbac-namespaced": {"rbac": {"namespaced": True}},
    "watch-namespace": {"watchNamespace": "streaming"},
    "no-rbac": {"rbac": {"create": False}},
    "service": {"service": {"enabled": True}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "egressPorts": [443, 6443],
            "egressCidrs": ["10.0.0.0/8"],
        }
    },
    "custom-topology-spread": {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "checkpoint-autoscaler"}},
            }
        ]
    },
    "no-topology-spread": {"topologySpread": {"enabled": False}},
    "no-pdb": {"podDisruptionBudget": {"enabled": False}},
    "prometheus-rule": {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "image-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "emulator": {
        "emulator": {
            "enabled": True,
            "period": "2s",
            "scenarios": {"steady.yaml": (ROOT / "examples" / "scenarios" / "steady.yaml").read_text()},
        },
        "networkPolicy": {"enabled": True},
    },
    # The chart README's kind/minikube example.
    "emulator-with-allow-list": {
        "emulator": {
            "enabled": True,
            "scenarios": {"steady.yaml": (ROOT / "examples" / "scenarios" / "steady.yaml").read_text()},
        },
        "controller": {
            "tenancy": {
                "mode": "allow-list",
                "allowList": {
                    "namespaces": {"default": {"applications": ["arn:aws:kinesisanalytics:*:123456789012:application/*"]}}
                },
            }
        },
    },
    "grafana-dashboard": {
        "grafanaDashboard": {
            "enabled": True,
            "labels": {"grafana_dashboard": "1", "team": "platform"},
            "annotations": {"grafana_folder": "Streaming"},
            "namespace": "monitoring",
        }
    },
    "kpu-hour-price": {"controller": {"kpuHourPrice": "0.11 USD"}},
    "extra-args-and-env": {
        "controller": {
            "extraArgs": ["--region=eu-central-1"],
            "extraEnv": [{"name": "AWS_MAX_ATTEMPTS", "value": "5"}],
        }
    },
}


@pytest.fixture(scope="module")
def chart():
    loaded = helm.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


def render(chart, values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The chart's objects as a cluster would receive them (NOTES.txt left out)."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        kinds.setdefault(o["kind"], []).append(o)
    return kinds


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


# ---------------------------------------------------------------------------------------------
# The chart as a package


def test_app_version_is_the_crate_version(chart):
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert chart.metadata["apiVersion"] == "v2"
    # The workspace sets every crate's version (`version.workspace = true`).
    assert cargo["package"]["version"] == {"workspace": True}
    assert chart.metadata["appVersion"] == cargo["workspace"]["package"]["version"]


def test_chart_crd_is_byte_identical_to_the_repository_crd(chart):
    repo_crd = (ROOT / "crds" / "checkpointbudget.yaml").read_bytes()
    chart_crd = (CHART_DIR / "crds" / "checkpointbudget.yaml").read_bytes()
    assert chart_crd == repo_crd, (
        "charts/checkpoint-autoscaler/crds/checkpointbudget.yaml differs from crds/checkpointbudget.yaml; "
        "copy it: cp crds/checkpointbudget.yaml charts/checkpoint-autoscaler/crds/"
    )
    # Helm itself sees exactly that one CRD.
    crds = chart.crds
    assert [c["name"] for c in crds] == ["crds/checkpointbudget.yaml"]
    assert crds[0]["data"].encode() == repo_crd
    crd = yaml.safe_load(crds[0]["data"])
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "checkpointbudgets.checkpoint-autoscaler.dev"


def test_default_values_satisfy_the_schema_and_every_key_is_declared(chart):
    chart.validate_schema({})
    schema = chart.schema
    assert schema is not None
    declared = set(schema["properties"]) - {"global"}
    assert set(chart.values) == declared, "values.yaml and values.schema.json must list the same keys"


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_each_switch_renders_and_lints_without_errors(chart, switch):
    values = SWITCHES[switch]
    chart.validate_schema(values)
    objects = render(chart, values)
    assert one(objects, "Deployment", FULLNAME)
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report
    # Every namespaced object carries its namespace, so `helm template | kubectl apply` works.
    for o in objects:
        if o["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert o["metadata"].get("namespace"), f"{o['kind']} {o['metadata']['name']} has no namespace"


def controller_binary() -> Path | None:
    """The controller binary scripts/test.sh builds before pytest runs."""
    explicit = os.environ.get("CHECKPOINT_AUTOSCALER_BIN")
    if explicit:
        return Path(explicit)
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "checkpoint-autoscaler"
    return binary if binary.is_file() else None


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_rendered_arguments_are_accepted_by_the_controller(chart, switch):
    """The chart and `checkpoint-autoscaler run` agree on every flag and value: clap parses
    each argument (rejecting unknown flags and bad values) before `--help` stops it."""
    binary = controller_binary()
    if binary is None:
        pytest.skip("checkpoint-autoscaler is not built: run `cargo build --bins` (scripts/test.sh does)")
    args = container(render(chart, SWITCHES[switch]))["args"]
    assert args[0] == "run"
    result = subprocess.run(
        [binary, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stderr}"


# ---------------------------------------------------------------------------------------------
# What the defaults install


def test_defaults_render_exactly_these_objects(chart):
    kinds = by_kind(render(chart))
    assert {k: sorted(o["metadata"]["name"] for o in v) for k, v in kinds.items()} == {
        "ServiceAccount": [FULLNAME],
        "ClusterRole": [FULLNAME],
        "ClusterRoleBinding": [FULLNAME],
        "Role": [f"{FULLNAME}-leader-election"],
        "RoleBinding": [f"{FULLNAME}-leader-election"],
        "Deployment": [FULLNAME],
        "PodDisruptionBudget": [FULLNAME],
    }


def test_pod_is_hardened(chart):
    objects = render(chart)
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(objects)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    resources = container(objects)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_deployment_runs_the_controller_with_leader_election_and_probes(chart):
    objects = render(chart)
    deployment = one(objects, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 2
    c = container(objects)
    assert c["image"] == "checkpoint-autoscaler:" + chart.metadata["appVersion"]
    assert c["args"] == [
        "run",
        "--http-addr=0.0.0.0:8080",
        "--interval=1m",
        "--log-format=json",
        "--shutdown-grace=20s",
        "--kube-timeout=10s",
        "--leader-election",
        f"--leader-election-namespace={NAMESPACE}",
        f"--lease-name={FULLNAME}",
        "--lease-duration=30s",
        "--lease-renew-deadline=20s",
        "--lease-retry-period=2s",
        "--tenancy=tag",
    ]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    variables = env(objects)
    assert variables["RUST_LOG"] == "info"
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "AWS_REGION" not in variables and "AWS_ENDPOINT_URL" not in variables
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_replicas_spread_over_zones_and_nodes(chart):
    objects = render(chart)
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    selector = one(objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    spread = pod["topologySpreadConstraints"]
    assert [s["topologyKey"] for s in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for s in spread:
        assert s["labelSelector"] == {"matchLabels": selector}
        assert s["whenUnsatisfiable"] == "ScheduleAnyway"
    custom = SWITCHES["custom-topology-spread"]
    pod = one(render(chart, custom), "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == custom["topologySpreadConstraints"]
    pod = one(render(chart, SWITCHES["no-topology-spread"]), "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod


def test_rbac_is_exactly_what_the_controller_needs(chart):
    objects = render(chart)
    assert one(objects, "ClusterRole")["rules"] == BUDGET_RULES
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    lease_role = one(objects, "Role")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert lease_role["rules"] == lease_rules(FULLNAME)
    lease_binding = one(objects, "RoleBinding")
    assert lease_binding["metadata"]["namespace"] == NAMESPACE
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    assert lease_binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Nothing else anywhere: no wildcard, no Secrets, no writes to the spec.
    for o in objects:
        for rule in o.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_service_account_carries_the_irsa_role(chart):
    arn = SWITCHES["irsa"]["serviceAccount"]["roleArn"]
    objects = render(chart, {"serviceAccount": {"roleArn": arn, "annotations": {"team": "platform"}}})
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn, "team": "platform"}
    assert one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    # Without a role, no annotation at all (EKS Pod Identity or node credentials).
    assert "annotations" not in one(render(chart), "ServiceAccount")["metadata"]


def test_existing_service_account_is_bound_and_not_created(chart):
    objects = render(chart, SWITCHES["existing-service-account"])
    assert "ServiceAccount" not in by_kind(objects)
    assert one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]["serviceAccountName"] == "flink-scaler"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert one(objects, kind)["subjects"][0]["name"] == "flink-scaler"
    with pytest.raises(helm.HelmRenderError, match="serviceAccount.name is required"):
        render(chart, {"serviceAccount": {"create": False}})


def test_pdb_only_with_more_than_one_replica(chart):
    pdb = one(render(chart, {"replicaCount": 3}), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(render(chart), "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    assert "PodDisruptionBudget" not in by_kind(render(chart, {"replicaCount": 1}))
    assert "PodDisruptionBudget" not in by_kind(render(chart, SWITCHES["no-pdb"]))


def test_single_replica_without_leader_election(chart):
    objects = render(chart, SWITCHES["single-replica-no-leader-election"])
    args = container(objects)["args"]
    assert not [a for a in args if a.startswith("--leader-election") or a.startswith("--lease")]
    assert "Role" not in by_kind(objects) and "RoleBinding" not in by_kind(objects)
    deployment = one(objects, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 1
    # Without a leader, an old and a new pod must never run together: both would act.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_rolling_updates_keep_a_standby_under_leader_election(chart):
    for values in ({}, {"replicaCount": 1}):
        strategy = one(render(chart, values), "Deployment", FULLNAME)["spec"]["strategy"]
        # The new pod is up (a standby) before the leader stops, drains and releases the Lease.
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_termination_grace_covers_the_drain_and_the_lease_release(chart):
    pod = one(render(chart), "Deployment", FULLNAME)["spec"]["template"]["spec"]
    # 20 s for the reconciles in flight, up to 20 s (the renew deadline) to release, 5 s spare.
    assert pod["terminationGracePeriodSeconds"] == 45
    values = {"controller": {"shutdownGraceSeconds": 30}}
    with pytest.raises(Exception, match="terminationGracePeriodSeconds must be at least 55"):
        render(chart, values)
    objects = render(chart, {**values, "terminationGracePeriodSeconds": 55})
    assert "--shutdown-grace=30s" in container(objects)["args"]
    # Without leader election there is no Lease to release.
    no_le = {"replicaCount": 1, "leaderElection": {"enabled": False}, "terminationGracePeriodSeconds": 25}
    assert one(render(chart, no_le), "Deployment", FULLNAME)["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] == 25
    with pytest.raises(Exception, match="at least 25"):
        render(chart, {**no_le, "terminationGracePeriodSeconds": 24})


def test_lease_timings_reach_the_controller_and_are_checked(chart):
    values = {
        "leaderElection": {"leaseDurationSeconds": 40, "renewDeadlineSeconds": 25, "retryPeriodSeconds": 3},
        "terminationGracePeriodSeconds": 50,
    }
    args = container(render(chart, values))["args"]
    assert {"--lease-duration=40s", "--lease-renew-deadline=25s", "--lease-retry-period=3s"} <= set(args)
    with pytest.raises(Exception, match="greater than leaderElection.renewDeadlineSeconds"):
        render(chart, {"leaderElection": {"leaseDurationSeconds": 20}})
    # 15 s cannot hold an UpdateApplication (10 s) and the fence's margin (5 s) past a 2 s renewal.
    with pytest.raises(Exception, match="must be greater than 17"):
        render(chart, {"leaderElection": {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 10}})


def test_liveness_probe_is_the_stuck_check(chart):
    probe = container(render(chart))["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
    # /healthz bounds are minutes (watch) and tens of seconds (elector): three misses 10 s
    # apart restart a stuck container, one slow answer does not.
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 30
    assert probe["timeoutSeconds"] >= 2


@pytest.mark.parametrize("switch,watched", [("rbac-namespaced", NAMESPACE), ("watch-namespace", "streaming")])
def test_namespaced_mode_uses_a_role_and_passes_namespace(chart, switch, watched):
    objects = render(chart, SWITCHES[switch])
    kinds = by_kind(objects)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    budget_role = one(objects, "Role", FULLNAME)
    assert budget_role["metadata"]["namespace"] == watched
    assert budget_role["rules"] == BUDGET_RULES
    binding = one(objects, "RoleBinding", FULLNAME)
    assert binding["metadata"]["namespace"] == watched
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # The Lease stays in the release namespace whatever is watched.
    lease_role = one(objects, "Role", f"{FULLNAME}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert lease_role["rules"] == lease_rules(FULLNAME)
    assert f"--namespace={watched}" in container(objects)["args"]
    assert not [a for a in container(render(chart))["args"] if a.startswith("--namespace")]


def test_no_rbac_objects_when_disabled(chart):
    kinds = by_kind(render(chart, SWITCHES["no-rbac"]))
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & set(kinds)


def test_aws_region_and_endpoint_reach_the_environment(chart):
    variables = env(render(chart, SWITCHES["aws-region-and-endpoint"]))
    assert variables["AWS_REGION"] == "eu-west-1"
    assert variables["AWS_ENDPOINT_URL"] == "http://checkpoint-autoscaler-emulator:4566"


def test_log_format_interval_and_extras(chart):
    c = container(render(chart, SWITCHES["text-logs-and-interval"]))
    assert "--log-format=text" in c["args"] and "--interval=30s" in c["args"]
    assert {"name": "RUST_LOG", "value": "debug"} in c["env"]
    c = container(render(chart, SWITCHES["extra-args-and-env"]))
    assert c["args"][-1] == "--region=eu-central-1"
    assert {"name": "AWS_MAX_ATTEMPTS", "value": "5"} in c["env"]
    assert container(render(chart, SWITCHES["image-digest"]))["image"] == "checkpoint-autoscaler@sha256:" + "ab" * 32


def test_tag_tenancy_mounts_the_roles_only_when_given(chart):
    # Without an allow-list: no file, so no budget may name a role.
    objects = render(chart)
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{FULLNAME}-tenancy"]
    assert not [a for a in container(objects)["args"] if a.startswith("--tenancy-config")]
    # With one: the same file as under allow-list (the controller reads only its roleArns).
    values = SWITCHES["tenancy-tag-with-roles"]
    objects = render(chart, values)
    config_map = one(objects, "ConfigMap", f"{FULLNAME}-tenancy")
    assert yaml.safe_load(config_map["data"]["tenancy.yaml"]) == values["controller"]["tenancy"]["allowList"]
    c = container(objects)
    assert "--tenancy=tag" in c["args"]
    assert "--tenancy-config=/etc/checkpoint-autoscaler/tenancy.yaml" in c["args"]
    assert {"name": "tenancy", "mountPath": "/etc/checkpoint-autoscaler", "readOnly": True} in c["volumeMounts"]
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]
    assert {"name": "tenancy", "configMap": {"name": f"{FULLNAME}-tenancy"}} in pod["spec"]["volumes"]
    assert "checksum/tenancy" in pod["metadata"]["annotations"]


def test_the_controllers_own_account_is_passed_when_known(chart):
    """aws.accountId becomes --aws-account-id; with the emulator (which has no STS) its
    account is passed; otherwise the controller asks STS GetCallerIdentity."""

    def accounts(values):
        return [a for a in container(render(chart, values))["args"] if a.startswith("--aws-account-id")]

    assert accounts({}) == []
    assert accounts(SWITCHES["aws-account-id"]) == ["--aws-account-id=111122223333"]
    assert accounts(SWITCHES["emulator"]) == ["--aws-account-id=123456789012"]
    assert accounts({**SWITCHES["emulator"], **SWITCHES["aws-account-id"]}) == ["--aws-account-id=111122223333"]


def test_tenancy_allow_list_is_mounted_as_the_config_file(chart):
    values = SWITCHES["tenancy-allow-list"]
    objects = render(chart, values)
    config_map = one(objects, "ConfigMap", f"{FULLNAME}-tenancy")
    assert yaml.safe_load(config_map["data"]["tenancy.yaml"]) == values["controller"]["tenancy"]["allowList"]
    c = container(objects)
    assert "--tenancy=allow-list" in c["args"]
    assert "--tenancy-config=/etc/checkpoint-autoscaler/tenancy.yaml" in c["args"]
    assert {"name": "tenancy", "mountPath": "/etc/checkpoint-autoscaler", "readOnly": True} in c["volumeMounts"]
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]
    assert {"name": "tenancy", "configMap": {"name": f"{FULLNAME}-tenancy"}} in pod["spec"]["volumes"]
    # A changed allow-list rolls the pods (it is read at start-up).
    changed = copy.deepcopy(values)
    changed["controller"]["tenancy"]["allowList"]["namespaces"]["streaming"]["applications"].append(
        "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/billing"
    )
    rolled = one(render(chart, changed), "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert rolled["checksum/tenancy"] != pod["metadata"]["annotations"]["checksum/tenancy"]


def test_service_and_service_monitor(chart):
    service = one(render(chart, SWITCHES["service"]), "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert "ServiceMonitor" not in by_kind(render(chart, SWITCHES["service"]))
    objects = render(chart, SWITCHES["service-monitor"])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    # The ServiceMonitor selects the Service, which selects the pods.
    service = one(objects, "Service")
    assert service["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
    assert service["spec"]["selector"] == one(objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]


def test_prometheus_rule_carries_the_documented_alerts(chart):
    rule = one(render(chart, SWITCHES["prometheus-rule"]), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    doc = (ROOT / "docs" / "metrics.md").read_text()
    alerts = doc[doc.index("## Alerts"):]
    block = alerts[alerts.index("```yaml\n") + len("```yaml\n"):]
    documented = yaml.safe_load(block[: block.index("```")])
    assert rule["spec"]["groups"] == documented["groups"]
    # Every metric an alert reads is one the controller exposes (docs/metrics.md's table).
    for group in documented["groups"]:
        for alert in group["rules"]:
            for name in re.findall(r"checkpoint_autoscaler_\w+", alert["expr"]):
                assert f"| `{name}` |" in doc, name
    assert "PrometheusRule" not in by_kind(render(chart))


def test_network_policy(chart):
    values = SWITCHES["network-policy"]
    objects = render(chart, values)
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == one(objects, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["ingress"] == [
        {"from": values["networkPolicy"]["metricsFrom"], "ports": [{"port": "http", "protocol": "TCP"}]}
    ]
    dns, https = policy["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert https == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
    }
    # Without scrapers listed, nothing may connect in.
    assert not one(render(chart, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"].get("ingress")


# ---------------------------------------------------------------------------------------------
# Bad values fail at install time

def test_emulator_for_test_clusters(chart):
    values = SWITCHES["emulator"]
    objects = render(chart, values)
    name = f"{FULLNAME}-emulator"
    emulator = one(objects, "Deployment", name)
    controller = one(objects, "Deployment", FULLNAME)
    # Neither selects the other's pods.
    emulator_labels = emulator["spec"]["template"]["metadata"]["labels"]
    controller_selector = controller["spec"]["selector"]["matchLabels"]
    assert not emulator_labels.items() >= controller_selector.items()
    assert not controller["spec"]["template"]["metadata"]["labels"].items() >= emulator["spec"]["selector"]["matchLabels"].items()
    service = one(objects, "Service", name)
    assert service["spec"]["selector"] == emulator["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 4566
    # The controller is pointed at the Service, with placeholder credentials.
    variables = env(objects)
    assert variables["AWS_ENDPOINT_URL"] == f"http://{name}.{NAMESPACE}.svc:4566"
    assert variables["AWS_REGION"] == "us-east-1"
    assert variables["AWS_ACCESS_KEY_ID"] and variables["AWS_SECRET_ACCESS_KEY"]
    pod = emulator["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # The NetworkPolicy lets the controller reach it.
    egress = one(objects, "NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"podSelector": {"matchLabels": emulator["spec"]["selector"]["matchLabels"]}}],
            "ports": [{"port": 4566, "protocol": "TCP"}]} in egress
    # Not rendered unless asked for.
    assert not [o for o in render(chart) if o["metadata"]["name"] == name]


def test_emulator_serves_the_rendered_scenarios(chart, tmp_path):
    """The emulator Deployment's arguments and scenario ConfigMap, run as rendered (bound to
    loopback): it starts, and boto3 finds the scenario's application through it."""
    binary = controller_binary()
    if binary is None:
        pytest.skip("checkpoint-autoscaler is not built: run `cargo build --bins` (scripts/test.sh does)")
    boto3 = pytest.importorskip("boto3")
    objects = render(chart, SWITCHES["emulator"])
    scenarios = one(objects, "ConfigMap", f"{FULLNAME}-emulator-scenarios")["data"]
    for file, text in scenarios.items():
        (tmp_path / file).write_text(text)
    args = one(objects, "Deployment", f"{FULLNAME}-emulator")["spec"]["template"]["spec"]["containers"][0]["args"]
    local = {"--bind": "127.0.0.1", "--port": "0", "--scenario": str(tmp_path)}
    args = [f"{a.split('=')[0]}={local[a.split('=')[0]]}" if a.split("=")[0] in local else a for a in args]
    process = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.poll() is not None else url
        client = boto3.client(
            "kinesisanalyticsv2",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
        )
        names = [a["ApplicationName"] for a in client.list_applications()["ApplicationSummaries"]]
        assert names == [yaml.safe_load(scenarios["steady.yaml"])["application"]["name"]]
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# The Grafana dashboard

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are neither functions,
    aggregation operators or keywords, nor label names (in `{...}`, `by (...)`, `without (...)`,
    `on (...)`, `ignoring (...)`), nor inside string literals or range selectors."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = m.group(0)
        after = expr[m.end():].lstrip()
        if after.startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_of_promql():
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[5m])))') == {"a_bucket"}
    assert metric_names('max by (budget) (m{type=~"A|B"}) / on (budget) n offset 5m') == {"m", "n"}
    assert metric_names("sum(increase(c_total[$__rate_interval])) > 0") == {"c_total"}


def exported_metrics() -> dict[str, str]:
    """The metrics the controller exports, by name, with their type: docs/metrics.md's table,
    which tests/integration/docs.rs keeps identical to the registry in crates/controller/src/metrics.rs."""
    table = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"\| `(checkpoint_autoscaler_\w+)` \| (\w+) \|", line)
        if m:
            table[m.group(1)] = m.group(2)
    assert len(table) >= 10, table
    return table


def exported_series(name: str, exported: dict[str, str]) -> bool:
    if exported.get(name):
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and exported.get(name[: -len(suffix)]) == "histogram":
            return True
    return False


def dashboard_of(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    config_map = one(objects, "ConfigMap", f"{FULLNAME}-dashboard")
    (key, text), = config_map["data"].items()
    assert key.endswith(".json")
    return config_map, json.loads(text)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_grafana_dashboard_is_opt_in_and_labelled_for_the_sidecar(chart):
    assert not [o for o in render(chart) if o["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    config_map, dashboard = dashboard_of(render(chart, {"grafanaDashboard": {"enabled": True}}))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    values = SWITCHES["grafana-dashboard"]["grafanaDashboard"]
    config_map, _ = dashboard_of(render(chart, SWITCHES["grafana-dashboard"]))
    assert config_map["metadata"]["labels"].items() >= values["labels"].items()
    assert config_map["metadata"]["annotations"] == values["annotations"]
    assert config_map["metadata"]["namespace"] == "monitoring"
    # The sidecar's label can be replaced, not only added to (Helm merges maps: null removes a key).
    replaced = {"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": None, "dashboards": "flink"}}}
    config_map, _ = dashboard_of(render(chart, replaced))
    assert config_map["metadata"]["labels"]["dashboards"] == "flink"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    # The dashboard is the chart's file, byte for byte.
    assert json.loads((CHART_DIR / "dashboards" / "checkpoint-autoscaler.json").read_text()) == dashboard


def test_grafana_dashboard_queries_name_only_exported_metrics(chart):
    _, dashboard = dashboard_of(render(chart, {"grafanaDashboard": {"enabled": True}}))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    exported = exported_metrics()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    used = set()
    for name in ("namespace", "budget"):
        query = variables[name]["query"]["query"]
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert m and m.group(2) == name, query
        names = metric_names(m.group(1))
        assert names and all(exported_series(n, exported) for n in names), query
        used |= names
    assert "$namespace" in variables["budget"]["query"]["query"]
    queries = 0
    ids = set()
    for panel in panels(dashboard):
        assert panel["id"] not in ids, panel["title"]
        ids.add(panel["id"])
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']} selects no metric"
            unknown = {n for n in names if not exported_series(n, exported)}
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not exported (docs/metrics.md)"
            assert target["datasource"]["uid"] == "${datasource}"
            used |= names
            queries += 1
            # The per-budget figures are shown for the chosen budget only.
            if any(n.startswith("checkpoint_autoscaler_budget_") for n in names):
                assert 'namespace="$namespace"' in target["expr"] and 'budget="$budget"' in target["expr"], target["expr"]
    assert queries >= 10
    # What the issue asks for: duration against its budget, KPUs, decisions and reasons, AWS calls and errors.
    for needed in (
        "checkpoint_autoscaler_budget_checkpoint_duration_max_seconds",
        "checkpoint_autoscaler_budget_max_checkpoint_duration_seconds",
        "checkpoint_autoscaler_budget_kpus",
        "checkpoint_autoscaler_budget_recommended_kpus",
        "checkpoint_autoscaler_budget_condition",
        "checkpoint_autoscaler_decisions_total",
        "checkpoint_autoscaler_aws_calls_total",
        "checkpoint_autoscaler_reconcile_failures_total",
    ):
        assert needed in used, needed


def test_kpu_hour_price_reaches_the_controller(chart):
    assert "--kpu-hour-price=0.11 USD" in container(render(chart, SWITCHES["kpu-hour-price"]))["args"]
    assert not [a for a in container(render(chart))["args"] if a.startswith("--kpu-hour-price")]


BAD_VALUES = {
    "replicas-not-a-number": {"replicaCount": "two"},
    "zero-replicas": {"replicaCount": 0},
    "replicas-without-leader-election": {"replicaCount": 2, "leaderElection": {"enabled": False}},
    "unknown-top-level-key": {"replica": 2},
    "misspelt-nested-key": {"serviceAccount": {"rolearn": "arn:aws:iam::111122223333:role/x"}},
    "role-arn-not-an-iam-role": {"serviceAccount": {"roleArn": "arn:aws:s3:::bucket"}},
    "region-malformed": {"aws": {"region": "Ireland"}},
    "endpoint-not-a-url": {"aws": {"endpointUrl": "emulator:4566"}},
    "log-format-unknown": {"controller": {"logFormat": "yaml"}},
    "interval-not-a-duration": {"controller": {"interval": "sixty"}},
    "tenancy-mode-unknown": {"controller": {"tenancy": {"mode": "labels"}}},
    "allow-list-without-namespaces": {"controller": {"tenancy": {"mode": "allow-list"}}},
    # A name alone would reach that name in every region and account the controller reaches.
    "allow-list-bare-name": {
        "controller": {"tenancy": {"mode": "allow-list", "allowList": {"namespaces": {"a": {"applications": ["orders-*"]}}}}}
    },
    "allow-list-not-a-flink-application": {
        "controller": {"tenancy": {"allowList": {"namespaces": {"a": {"applications": ["arn:aws:s3:::orders"]}}}}}
    },
    "allow-list-account-malformed": {
        "controller": {
            "tenancy": {
                "allowList": {"namespaces": {"a": {"applications": ["arn:aws:kinesisanalytics:*:team-b:application/x"]}}}
            }
        }
    },
    "account-id-malformed": {"aws": {"accountId": "1111-2222-3333"}},
    "watch-namespace-not-a-dns-label": {"watchNamespace": "Team_A"},
    "namespaced-not-a-boolean": {"rbac": {"namespaced": "yes"}},
    "http-port-privileged": {"httpPort": 80},
    "pull-policy-unknown": {"image": {"pullPolicy": "Sometimes"}},
    "digest-malformed": {"image": {"digest": "latest"}},
    "spread-without-topology-key": {"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]},
    "pdb-zero": {"podDisruptionBudget": {"maxUnavailable": 0}},
    "service-monitor-interval-malformed": {"serviceMonitor": {"enabled": True, "interval": "often"}},
    "egress-port-out-of-range": {"networkPolicy": {"enabled": True, "egressPorts": [70000]}},
    "emulator-scenario-not-yaml": {"emulator": {"enabled": True, "scenarios": {"steady.json": "{}"}}},
    "emulator-period-malformed": {"emulator": {"enabled": True, "period": "fast"}},
    "kpu-hour-price-not-a-price": {"controller": {"kpuHourPrice": "$0.11"}},
    "kpu-hour-price-currency-lowercase": {"controller": {"kpuHourPrice": "0.11 usd"}},
    "dashboard-labels-not-strings": {"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": 1}}},
    "dashboard-namespace-not-a-dns-label": {"grafanaDashboard": {"enabled": True, "namespace": "Monitoring"}},
    "lease-duration-not-seconds": {"leaderElection": {"leaseDurationSeconds": "30s"}},
    "shutdown-grace-zero": {"controller": {"shutdownGraceSeconds": 0}},
    "kube-timeout-too-long": {"controller": {"kubeTimeoutSeconds": 600}},
    "termination-grace-not-a-number": {"terminationGracePeriodSeconds": "45"},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(chart, case):
    values = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    # And the same values never reach the templates: an install would fail the same way.
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART_DIR, values, namespace=NAMESPACE)
    assert report["errors"], f"lint accepted {json.dumps(values)}"


# ---------------------------------------------------------------------------------------------
# Rendered snapshots, which tests/integration/chart.rs checks against the Kubernetes API types

SNAPSHOTS = ROOT / "tests" / "data" / "chart"
SNAPSHOT_VALUES = {
    "defaults": SWITCHES["defaults"],
    # Every optional object at once.
    "everything": {
        **SWITCHES["emulator"],
        "serviceAccount": {"roleArn": "arn:aws:iam::111122223333:role/checkpoint-autoscaler"},
        "controller": SWITCHES["tenancy-allow-list"]["controller"],
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": SWITCHES["network-policy"]["networkPolicy"],
    },
    "namespaced": SWITCHES["watch-namespace"],
    # One replica, no Lease: the Recreate strategy.
    "no-leader-election": SWITCHES["single-replica-no-leader-election"],
}


@pytest.mark.parametrize("snapshot", sorted(SNAPSHOT_VALUES))
def test_rendered_snapshots_are_current(chart, snapshot):
    objects = render(chart, SNAPSHOT_VALUES[snapshot])
    text = "".join("---\n" + yaml.safe_dump(o, sort_keys=True) for o in objects)
    path = SNAPSHOTS / f"{snapshot}.yaml"
    if os.environ.get("UPDATE_DOCS"):
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file() and path.read_text() == text, (
        f"{path.relative_to(ROOT)} is out of date; regenerate it with "
        "UPDATE_DOCS=1 python3 -m pytest tests/python/test_chart.py -k snapshots"
    )


# ---------------------------------------------------------------------------------------------
# The chart's README documents every value, generated from the `# --` comments in values.yaml

README = CHART_DIR / "README.md"
VALUES_START = "<!-- values:start (generated from values.yaml by tests/python/test_chart.py) -->"
VALUES_END = "<!-- values:end -->"


def documented_values(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for each key with a `# --` comment, in file order.

    A `# --` comment describes the key below it and may continue on the following `#`
    lines; commented-out examples after a key belong to no key.
    """
    rows: list[tuple[str, str]] = []
    parents: list[tuple[int, str]] = []
    comment: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
        elif stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
        elif stripped and ":" in stripped and not stripped.startswith("-"):
            indent = len(line) - len(line.lstrip())
            key = stripped.split(":", 1)[0]
            while parents and parents[-1][0] >= indent:
                parents.pop()
            path = ".".join([p for _, p in parents] + [key])
            if comment is not None:
                rows.append((path, " ".join(comment)))
            comment = None
            parents.append((indent, key))
        elif not stripped:
            comment = None
    return rows


def values_table(chart) -> str:
    defaults = chart.values
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    for path, description in documented_values((CHART_DIR / "values.yaml").read_text()):
        value: Any = defaults
        for part in path.split("."):
            value = value[part]
        default = json.dumps(value, separators=(",", ":")).replace("|", "\\|")
        text = description.replace("|", "\\|")
        lines.append(f"| `{path}` | `{default}` | {text} |")
    return "\n".join(lines)


def test_chart_readme_lists_every_value(chart):
    table = values_table(chart)
    # Every value is documented, itself or through the object that holds it.
    documented = {path for path, _ in documented_values((CHART_DIR / "values.yaml").read_text())}

    def covered(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))

    def leaves(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            out += leaves(value, path + ".") if isinstance(value, dict) and value else [path]
        return out

    missing = [p for p in leaves(chart.values) if not covered(p)]
    assert not missing, f"values without a `# --` comment in values.yaml: {missing}"
    text = README.read_text()
    start, end = text.index(VALUES_START) + len(VALUES_START), text.index(VALUES_END)
    generated = text[:start] + "\n\n" + table + "\n\n" + text[end:]
    if os.environ.get("UPDATE_DOCS"):
        README.write_text(generated)
        return
    assert text == generated, (
        "charts/checkpoint-autoscaler/README.md is out of date; regenerate it with "
        "UPDATE_DOCS=1 python3 -m pytest tests/python/test_chart.py -k readme"
    )


# ---------------------------------------------------------------------------------------------
# The GitOps examples install this chart with values it accepts, from paths that exist

GITOPS = ROOT / "examples" / "gitops"


def gitops_docs(relative: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((GITOPS / relative).read_text()) if d]


def test_argo_cd_applications_point_at_the_chart_and_the_budgets(chart):
    (controller,) = gitops_docs("argocd/checkpoint-autoscaler.yaml")
    source = controller["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    values = source["helm"]["valuesObject"]
    chart.validate_schema(values)
    objects = render(chart, values, namespace=controller["spec"]["destination"]["namespace"])
    assert one(objects, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values[
        "serviceAccount"
    ]["roleArn"]
    (budgets,) = gitops_docs("argocd/budgets.yaml")
    budget_dir = ROOT / budgets["spec"]["source"]["path"]
    assert sorted(p.name for p in budget_dir.glob("*.yaml")), budget_dir
    # Budgets sync after the controller and its CRD.
    wave = lambda app: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])  # noqa: E731
    assert wave(budgets) > wave(controller)


def test_flux_installs_the_chart_then_syncs_the_budgets(chart):
    (release,) = gitops_docs("flux/controller/helmrelease.yaml")
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    assert release["spec"]["install"]["crds"] == "CreateReplace"
    assert release["spec"]["upgrade"]["crds"] == "CreateReplace"
    chart.validate_schema(release["spec"]["values"])
    render(chart, release["spec"]["values"], namespace=release["spec"]["targetNamespace"])
    controller, budgets = gitops_docs("flux/kustomizations.yaml")
    assert (ROOT / controller["spec"]["path"] / "helmrelease.yaml").is_file()
    assert controller["spec"]["wait"] is True
    assert budgets["spec"]["dependsOn"] == [{"name": controller["metadata"]["name"]}]
    assert (ROOT / budgets["spec"]["path"]).is_dir()
    (source,) = gitops_docs("flux/gitrepository.yaml")
    for kustomization in (controller, budgets):
        assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}


def test_gitops_installs_allow_every_role_their_budgets_name(chart):
    """A budget's roleArn is honoured only if the controller's allow-list names it for the
    budget's namespace (in both tenancy modes), and the IAM policy lets the controller
    assume it: the examples must agree, or their budgets would be Forbidden."""
    (argo,) = gitops_docs("argocd/checkpoint-autoscaler.yaml")
    (flux,) = gitops_docs("flux/controller/helmrelease.yaml")
    installs = {"argocd": argo["spec"]["source"]["helm"]["valuesObject"], "flux": flux["spec"]["values"]}
    policy = json.loads((ROOT / "examples" / "iam-policy.json").read_text())
    assumable = {
        resource
        for statement in policy["Statement"]
        if statement["Action"] == "sts:AssumeRole" or "sts:AssumeRole" in statement["Action"]
        for resource in ([statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"])
    }
    roles = []
    for path in sorted((GITOPS / "budgets").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CheckpointBudget" and doc["spec"]["application"].get("roleArn"):
                roles.append((doc["metadata"]["namespace"], doc["spec"]["application"]["roleArn"]))
    assert roles, "the examples show a budget with a roleArn"
    for name, values in installs.items():
        objects = render(chart, values)
        config = yaml.safe_load(one(objects, "ConfigMap", f"{FULLNAME}-tenancy")["data"]["tenancy.yaml"])
        assert "--tenancy-config=/etc/checkpoint-autoscaler/tenancy.yaml" in container(objects)["args"]
        for namespace, role in roles:
            assert role in config["namespaces"][namespace]["roleArns"], (name, namespace, role)
            assert role in assumable, role
