"""The Dockerfile, for real: scripts/image.sh builds the CPU image with podman and serves the demo in a
container. Slow (minutes, a few GB of packages) and needs root, podman, runc and debootstrap: `make test-slow`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_image_builds_and_serves_recommendations_in_a_container(demo_catalog, llmrec_home):
    if shutil.which("podman") is None:
        pytest.skip("podman not found: apt-get install podman runc debootstrap")
    done = subprocess.run([str(REPO / "scripts" / "image.sh"), "smoke"], capture_output=True, text=True, timeout=3600, env={**os.environ, "LLMREC_HOME": str(llmrec_home)})
    assert done.returncode == 0, done.stderr[-4000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(answer["items"]) == 3 and answer["scene"] == "movie"
