"""The detector image, built the production way, once per test session.

    image = detector_image()      # DetectorImage(name, revision, untracked_probe)

Base images come from `scripts/build-base-images` (kept when their tags exist); the detector
image from `scripts/build-detector-image --vendor` run on a clone of this checkout's HEAD in
which a file was planted that git does not track (`untracked_probe`): the provenance tests check
that it never reaches the image. The clone's HEAD is this checkout's HEAD, so the image's
revision is `git rev-parse HEAD` here.

Crates are vendored from the host's cargo cache into the build context (`--vendor`) and the
build runs with no network: Docker builds on a CI machine need not reach the crate registry.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .procs import require_tool, run

REPO_ROOT = Path(__file__).resolve().parents[3]
# The detector's image name, as compose/compose.yaml names it.
IMAGE = "detector-stack/detector:latest"
UNTRACKED_PROBE = "crates/detector-api/src/untracked_probe.rs"

# Cold: about 1 min for debootstrap, 2 to 3 min for the other base images.
BASE_IMAGES_TIMEOUT = 20 * 60
# Cold, on 2 cores: the Rust dependencies of detector-api take most of it (11 min measured
# while other cargo builds shared the cores; 30 min was exceeded with two more beside it).
IMAGE_BUILD_TIMEOUT = 45 * 60


@dataclass(frozen=True)
class DetectorImage:
    name: str        # the revision tag: unlike latest, no other build can move it
    tag: str         # DETECTOR_IMAGE_TAG for compose.yaml
    revision: str
    untracked_probe: str
    build_seconds: float


_built: DetectorImage | None = None


def require_docker() -> str:
    docker = require_tool("docker")
    done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"the Docker engine does not answer (`docker info`): {done.stderr.strip()}",
                    pytrace=False)
    return docker


def head_revision() -> str:
    return run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"]).stdout.strip()


def build_base_images() -> None:
    require_docker()
    require_tool("debootstrap")
    run([str(REPO_ROOT / "scripts" / "build-base-images")], timeout=BASE_IMAGES_TIMEOUT)


def detector_image() -> DetectorImage:
    """Build (once per session) the detector image from a clone of HEAD with an untracked file."""
    global _built
    if _built is not None:
        return _built
    build_base_images()
    require_tool("cargo")
    with tempfile.TemporaryDirectory(prefix="detector-image-") as tmp:
        clone = Path(tmp) / "checkout"
        run(["git", "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(clone)])
        run(["git", "-C", str(clone), "checkout", "--quiet", head_revision()])
        probe = clone / UNTRACKED_PROBE
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("// Untracked: must not reach the image (tests/ops/test_provenance.py).\n")
        started = time.monotonic()
        run([str(REPO_ROOT / "scripts" / "build-detector-image"), "--repo", str(clone),
             "--vendor", "--tag", IMAGE], timeout=IMAGE_BUILD_TIMEOUT)
        seconds = time.monotonic() - started
        revision = run(["git", "-C", str(clone), "rev-parse", "HEAD"]).stdout.strip()
    _forget_older_builds(revision)
    repository = IMAGE.rsplit(":", 1)[0]
    _built = DetectorImage(name=f"{repository}:{revision[:12]}", tag=revision[:12],
                           revision=revision, untracked_probe=UNTRACKED_PROBE,
                           build_seconds=seconds)
    return _built


# Revision tags kept besides this run's: builds running beside this one keep theirs.
KEEP_RECENT_BUILDS = 5


def _forget_older_builds(revision: str) -> None:
    """Untag the images of earlier test runs (one per commit, newest first in the listing), so a
    CI machine's disk does not fill with them; layers still used as build cache stay."""
    repository = IMAGE.rsplit(":", 1)[0]
    tags = [t for t in run(["docker", "image", "ls", "--format", "{{.Tag}}", repository]).stdout.split()
            if t not in ("latest", "<none>", revision[:12])]
    stale = [f"{repository}:{t}" for t in tags[KEEP_RECENT_BUILDS:]]
    if stale:
        run(["docker", "image", "rm", *stale], check=False)


def compose_command() -> list[str]:
    """`docker compose` (v2) when present, else `docker-compose` 1.29; fails naming the tool."""
    docker = require_docker()
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    found = shutil.which("docker-compose")
    if not found:
        pytest.fail("required tool `docker-compose` (or the `docker compose` plugin) is not "
                    "installed: apt-get install docker-compose", pytrace=False)
    return [found]
