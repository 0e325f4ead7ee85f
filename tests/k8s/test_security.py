"""Kubernetes that a security review passes (issue 17), proven on the rendered overlays offline.

Every pod template (the RayService's and RayJobs' head and worker groups, the RayJobs' submitters) runs
as the image's non-root user with RuntimeDefault seccomp, and every container (init containers and the
autoscaler sidecar KubeRay adds included) with a read-only root filesystem, no privilege escalation and
no capabilities, writing only to volumes; NetworkPolicies leave only Serve's port 8000 open beyond
llmrec's own pods (plus the KubeRay operator on the dashboard and Prometheus on the metrics port); Ray
token authentication comes from a Secret; the GPU overlay reaches no SQLite store. The schemas of every
rendered object (NetworkPolicies included) are checked by test_manifests.py; the submitter pod
templates, which it does not walk, are checked here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from test_manifests import (
    OVERLAYS,
    RAY_KINDS,
    REPO,
    SERVE_OVERLAYS,
    SERVER_DB_OVERLAYS,
    _k8s_validate,
    cluster_spec,
    config_map,
    groups,
    objects_of,
    ray_container,
    rendered,
    serve_config,
)

PART_OF = {"app.kubernetes.io/part-of": "llmrec"}  # the label every llmrec pod template sets
RAY_AUTH_SECRET = "llmrec-ray-auth"
KUBERAY_OPERATOR = {  # the peer allowed onto the dashboard: the KubeRay operator (docs/kubernetes.md installs it there)
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
}
SCRAPER = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def _dockerfile_user() -> tuple[str, int, str]:
    """(name, uid, HOME) of the user the image runs as: `useradd --create-home --uid N ... NAME`, then `USER NAME`."""
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"useradd --create-home --uid (\d+) .*?(\w+)\s*\\?$", text, re.M)
    assert match, "the Dockerfile no longer creates its user with `useradd --create-home --uid N ... NAME`"
    uid, name = int(match.group(1)), match.group(2)
    assert re.search(rf"^USER {name}$", text, re.M), f"the image no longer runs as {name}"
    return name, uid, f"/home/{name}"


USER, UID, HOME = _dockerfile_user()


# --- what the rendered overlays hold ---------------------------------------------------------------


def pod_templates(overlays: list[str] = OVERLAYS) -> Iterator[tuple[str, str, dict, dict]]:
    """(overlay, where, owning object, pod template) for every pod the overlays make: Ray groups, RayJob submitters, workloads."""
    for overlay in overlays:
        for obj in rendered(overlay):
            name = obj["metadata"]["name"]
            if obj["kind"] in RAY_KINDS:
                for group_name, group in groups(obj):
                    yield overlay, f"{overlay} {name} {group_name}", obj, group["template"]
                if obj["kind"] == "RayJob":
                    assert "submitterPodTemplate" in obj["spec"], f"{overlay} {name}: KubeRay's default submitter pod has no securityContext"
                    yield overlay, f"{overlay} {name} submitter", obj, obj["spec"]["submitterPodTemplate"]
            elif obj["kind"] in WORKLOADS:
                yield overlay, f"{overlay} {obj['kind']} {name}", obj, obj["spec"]["template"]


def containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def autoscalers(overlays: list[str] = OVERLAYS) -> Iterator[tuple[str, dict, dict]]:
    """(where, autoscalerOptions, head pod template) of every cluster whose head gets KubeRay's autoscaler sidecar."""
    for overlay in overlays:
        for obj in rendered(overlay):
            if obj["kind"] in RAY_KINDS and cluster_spec(obj).get("enableInTreeAutoscaling"):
                spec = cluster_spec(obj)
                yield f"{overlay} {obj['metadata']['name']} autoscaler", spec.get("autoscalerOptions", {}), spec["headGroupSpec"]["template"]


def _restricted_container_problems(sc: dict | None) -> list[str]:
    sc = sc or {}
    wanted = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    problems = [f"{k} is {sc.get(k)!r}, not {v!r}" for k, v in wanted.items() if sc.get(k) is not v]
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        problems.append(f"capabilities.drop is {caps.get('drop')!r}, not ['ALL']")
    if caps.get("add"):
        problems.append(f"capabilities.add {caps['add']}")
    if sc.get("privileged"):
        problems.append("privileged")
    if sc.get("runAsUser") == 0 or sc.get("runAsGroup") == 0:
        problems.append("runs as root")
    return problems


# --- securityContext ------------------------------------------------------------------------------


def test_the_image_runs_as_a_numeric_non_root_uid_the_manifests_name():
    assert UID > 0 and HOME == "/home/ray", (USER, UID, HOME)


def test_rayjobs_give_a_submitter_pod_template_that_kuberay_completes():
    for overlay, job in objects_of("RayJob"):
        name = job["metadata"]["name"]
        assert job["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode", name
        template = job["spec"]["submitterPodTemplate"]
        assert PART_OF.items() <= template["metadata"]["labels"].items(), f"{overlay} {name}: the NetworkPolicies admit llmrec's pods only"
        assert template["spec"]["restartPolicy"] == "Never"
        (submitter,) = template["spec"]["containers"]
        assert "command" not in submitter and "args" not in submitter, "KubeRay writes the `ray job submit` command where none is given"
        assert submitter["image"] == ray_container(cluster_spec(job)["headGroupSpec"])["image"], "the head's image: same Ray version"
        assert submitter["resources"]["requests"] == submitter["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_submitter_pod_templates_validate_against_kubernetes_schemas(overlay):
    jobs = [obj for obj in rendered(overlay) if obj["kind"] == "RayJob"]
    for job in jobs:
        meta = {"name": f"{job['metadata']['name']}-submitter"}
        _k8s_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": job["spec"]["submitterPodTemplate"]})
    assert jobs or not overlay.endswith("/jobs")


def test_every_pod_runs_as_the_images_user_with_runtime_default_seccomp():
    checked = 0
    for _, where, _, template in pod_templates():
        spec = template["spec"]
        sc = spec.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser") == UID and sc.get("runAsGroup") == UID, f"{where}: run as uid {UID} ({USER}); a number, or the kubelet cannot verify runAsNonRoot"
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{where}: seccompProfile"
        if any("persistentVolumeClaim" in v for v in spec.get("volumes", [])):
            assert sc.get("fsGroup") == UID, f"{where}: fsGroup {UID} lets {USER} write the volume"
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), f"{where}: {host}"
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        checked += 1
    assert checked >= 2 + 3 + 2 * 3 * 3, "the services' heads and workers, each RayJob's head, workers and submitter"


def test_every_container_and_init_container_is_restricted():
    for _, where, _, template in pod_templates():
        for c in containers(template):
            problems = _restricted_container_problems(c.get("securityContext"))
            assert not problems, f"{where}/{c['name']}: {problems}"


def test_the_autoscaler_sidecar_kuberay_adds_is_restricted_too():
    found = list(autoscalers(SERVE_OVERLAYS))
    assert found, "the RayService autoscales: KubeRay adds an autoscaler container to its head"
    for where, options, head in found:
        problems = _restricted_container_problems(options.get("securityContext"))
        assert not problems, f"{where}: autoscalerOptions.securityContext: {problems}"
        volumes = {v["name"] for v in head["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in options.get("volumeMounts", [])}
        assert {"/tmp", HOME} <= set(mounts) and set(mounts.values()) <= volumes, f"{where}: mounts {mounts}, head volumes {volumes}"


def test_the_read_only_root_leaves_tmp_home_and_the_volume_writable():
    for overlay, where, _, template in pod_templates():
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        home_dir = config_map(overlay)["LLMREC_HOME"]
        for c in containers(template):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert set(mounts.values()) <= set(volumes), f"{where}/{c['name']}: mounts a volume the pod lacks"
            for path in ("/tmp", HOME):  # Ray's /tmp/ray and temp files; HOME's caches (Hugging Face, torch, Triton, pip, Ray CLI)
                assert path in mounts, f"{where}/{c['name']}: {path} is on the read-only root filesystem"
                empty = volumes[mounts[path]].get("emptyDir")
                assert empty is not None and empty.get("sizeLimit"), f"{where}/{c['name']}: {path} should be an emptyDir with a sizeLimit"
            if "submitter" not in where:  # the init containers prepare catalogs there; the Ray containers write models, indexes, state
                assert home_dir in mounts and "persistentVolumeClaim" in volumes[mounts[home_dir]], f"{where}/{c['name']}: LLMREC_HOME"


# --- NetworkPolicies ------------------------------------------------------------------------------


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector {selector}: only matchLabels is evaluated here"
    return selector.get("matchLabels", {}).items() <= labels.items()


def network_policies(overlay: str) -> list[dict]:
    """The policies that apply to the overlay's pods: the service overlay's (the RayJobs bring none of their own)."""
    serve_overlay = overlay.split("/")[0]
    assert not [o for o in rendered(overlay) if o["kind"] == "NetworkPolicy" and overlay != serve_overlay], "jobs/ relies on the service's policies"
    return [o for o in rendered(serve_overlay) if o["kind"] == "NetworkPolicy"]


def _policies_for(overlay: str, labels: dict, direction: str) -> list[dict]:
    return [p for p in network_policies(overlay) if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], labels)]


def _is_llmrec_peer(peer: dict) -> bool:
    """A peer that is exactly this namespace's llmrec pods (no namespaceSelector: the policy's own namespace)."""
    return set(peer) == {"podSelector"} and peer["podSelector"] == {"matchLabels": PART_OF}


def _ports(rule: dict) -> set[tuple[str, int]] | None:
    """The rule's (protocol, port)s; None for all ports."""
    if not rule.get("ports"):
        return None
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}


def _open_ingress(overlay: str, labels: dict) -> dict[str, set]:
    """What the policies admit to a pod with these labels, by who may connect: 'llmrec', 'operator', 'scraper', 'anyone'."""
    admitted: dict[str, set] = {"llmrec": set(), "operator": set(), "scraper": set(), "anyone": set()}
    for policy in _policies_for(overlay, labels, "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports = _ports(rule)
            if peers and all(_is_llmrec_peer(p) for p in peers):
                who = "llmrec"
            elif peers == [KUBERAY_OPERATOR]:
                who = "operator"
            elif peers == [SCRAPER]:
                who = "scraper"
            else:
                who = "anyone"  # no `from`, an ipBlock, a whole namespace ...: treated as open to all
            admitted[who] |= {"all"} if ports is None else ports
    return admitted


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_network_policies_exist_and_only_select_by_the_labels_the_manifests_set(overlay):
    policies = network_policies(overlay)
    assert {p["metadata"]["name"] for p in policies} == {"llmrec-ray", "llmrec-serve"}
    for policy in policies:
        assert PART_OF.items() <= policy["spec"]["podSelector"]["matchLabels"].items(), f"{policy['metadata']['name']} selects pods beyond llmrec's"


def test_every_pod_is_under_an_ingress_and_an_egress_policy():
    for overlay, where, _, template in pod_templates():
        labels = template["metadata"]["labels"]
        assert _policies_for(overlay, labels, "Ingress"), f"{where}: no ingress policy selects it, so it accepts anything"
        assert _policies_for(overlay, labels, "Egress"), f"{where}: no egress policy selects it, so it reaches anything"


def test_only_the_serve_port_is_open_beyond_llmrecs_own_pods():
    for overlay, where, _, template in pod_templates():
        labels = template["metadata"]["labels"]
        admitted = _open_ingress(overlay, labels)
        assert admitted["llmrec"] == {"all"}, f"{where}: Ray's ports (GCS, dashboard, raylet, workers) must stay open among llmrec's pods"
        assert admitted["operator"] <= {("TCP", 8265)}, f"{where}: the KubeRay operator reaches only the dashboard"
        assert admitted["scraper"] <= {("TCP", 8080)}, f"{where}: Prometheus reaches only the metrics port"
        serve_pod = labels.get("app.kubernetes.io/component") == "serve"
        assert admitted["anyone"] == ({("TCP", 8000)} if serve_pod else set()), f"{where}: open to anyone: {admitted['anyone']}"


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_the_open_ports_are_the_ones_the_pods_serve_on(overlay):
    ((_, rayservice),) = objects_of("RayService", [overlay])
    serve_port = serve_config(rayservice)["http_options"]["port"]
    assert rayservice["spec"]["serveService"]["spec"]["ports"][0]["targetPort"] == serve_port == 8000
    ((_, monitor),) = objects_of("PodMonitor", [overlay])
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for _, where, _, template in pod_templates([overlay, f"{overlay}/jobs"]):
        if "submitter" in where:
            continue
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert ports[endpoint["port"]] == 8080, f"{where}: the metrics port the scraper may reach"
        if "dashboard" in ports:
            assert ports["dashboard"] == 8265, f"{where}: the dashboard port the operator may reach"


def test_egress_reaches_ray_pods_dns_the_database_and_https_only():
    for overlay, where, _, template in pod_templates():
        labels = template["metadata"]["labels"]
        rules = [r for p in _policies_for(overlay, labels, "Egress") for r in p["spec"].get("egress", [])]
        ports: set = set()
        for rule in rules:
            peers = rule.get("to", [])
            if peers and all(_is_llmrec_peer(p) for p in peers):
                continue  # Ray's own traffic, all ports
            assert rule.get("ports"), f"{where}: an egress rule to {peers or 'anywhere'} on every port"
            ports |= _ports(rule)
        assert any(r.get("to") and all(_is_llmrec_peer(p) for p in r["to"]) and not r.get("ports") for r in rules), f"{where}: Ray pods reach each other"
        assert {("UDP", 53), ("TCP", 53)} <= ports, f"{where}: DNS"
        assert ("TCP", 5432) in ports, f"{where}: the database (PostgreSQL)"
        assert ports <= {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443), ("TCP", 6443)}, f"{where}: egress {ports}"


# --- Ray token authentication ---------------------------------------------------------------------


def test_ray_clusters_use_token_authentication_from_the_secret():
    clusters = [(o, obj) for o in OVERLAYS for obj in rendered(o) if obj["kind"] in RAY_KINDS]
    assert {obj["kind"] for _, obj in clusters} == {"RayService", "RayJob"}
    for overlay, obj in clusters:
        spec = cluster_spec(obj)
        assert spec.get("authOptions") == {"mode": "token", "secretName": RAY_AUTH_SECRET}, f"{overlay} {obj['metadata']['name']}"
        major, minor, *_ = (int(x) for x in spec["rayVersion"].split("."))
        assert (major, minor) >= (2, 52), "KubeRay refuses authOptions token before Ray 2.52"
        for template in [g["template"] for _, g in groups(obj)] + ([obj["spec"]["submitterPodTemplate"]] if obj["kind"] == "RayJob" else []):
            for c in containers(template):
                names = {e["name"] for e in c.get("env", [])}
                assert not names & {"RAY_AUTH_TOKEN", "RAY_AUTH_MODE"}, f"{obj['metadata']['name']}/{c['name']}: KubeRay sets them from authOptions"


def test_the_docs_say_how_to_create_the_ray_token_secret():
    text = (REPO / "docs" / "kubernetes.md").read_text()
    assert f"create secret generic {RAY_AUTH_SECRET}" in text and "--from-literal=auth_token=" in text


# --- the store on several machines ------------------------------------------------------------------


def _strings(node) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("overlay", SERVER_DB_OVERLAYS)
def test_the_server_database_overlays_reach_no_sqlite_store(overlay):
    assert "LLMREC__STORE__URL" not in config_map(overlay), "no SQLite default in the ConfigMap"
    assert "LLMREC_STORE_ONE_MACHINE" not in config_map(overlay), "this overlay spans machines"
    for o in (overlay, f"{overlay}/jobs"):
        for obj in rendered(o):
            hits = [s for s in _strings(obj) if "sqlite" in s.lower()]
            assert not hits, f"{o} {obj['kind']} {obj['metadata']['name']}: {hits}"
        for _, where, _, template in pod_templates([o]):
            for c in containers(template):
                env = {e["name"]: e for e in c.get("env", [])}
                if c is template["spec"]["containers"][0] and "submitter" not in where:
                    assert "LLMREC__STORE__URL" in env, f"{where}/{c['name']}: the store URL from the Secret"
                if "LLMREC__STORE__URL" in env:
                    ref = env["LLMREC__STORE__URL"]["valueFrom"]["secretKeyRef"]
                    assert ref == {"name": "llmrec-secrets", "key": "store-url", "optional": False}, f"{where}/{c['name']}: {ref}"
    for pvc in [obj for obj in rendered(overlay) if obj["kind"] == "PersistentVolumeClaim"]:
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "why it needs a server database"


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_the_overlays_store_settings_pass_the_rankers_start_up_check_at_full_scale(overlay):
    from deployments.app import AppArgs
    from llmrec.config import ConfigError, load_config
    from llmrec.data.placement import check_store_for_cluster, declares_one_machine, is_sqlite

    ((_, rayservice),) = objects_of("RayService", [overlay])
    nodes = 1 + sum(g["maxReplicas"] for name, g in groups(rayservice) if name != "head")
    environ = dict(config_map(overlay))
    if overlay in SERVER_DB_OVERLAYS:
        environ["LLMREC__STORE__URL"] = "postgresql://llmrec:secret@postgres.llmrec.svc:5432/llmrec"  # what the Secret's store-url must hold
    (app,) = serve_config(rayservice)["applications"]
    args = AppArgs.model_validate(app["args"])
    url = load_config(args.config, args.overrides, environ=environ).store.url
    one_machine = declares_one_machine(environ)
    check_store_for_cluster(url, nodes, one_machine=one_machine)  # as RankerDeployment.__init__ does in the pod
    (pvc,) = [obj for obj in rendered(overlay) if obj["kind"] == "PersistentVolumeClaim"]
    assert one_machine == (pvc["spec"]["accessModes"] == ["ReadWriteOnce"]), "only a ReadWriteOnce volume keeps every pod on one machine"
    assert is_sqlite(url) == (overlay not in SERVER_DB_OVERLAYS)
    if is_sqlite(url):
        with pytest.raises(ConfigError):
            check_store_for_cluster(url, nodes)  # the same SQLite store without the one-machine declaration


def test_the_docs_explain_the_postgres_requirement():
    text = (REPO / "docs" / "kubernetes.md").read_text()
    assert "store-url" in text and "LLMREC_STORE_ONE_MACHINE" in text and "networkpolicy.yaml" in text
