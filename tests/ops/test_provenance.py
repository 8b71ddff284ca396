"""Build provenance: the detector image holds only tracked files of one commit and says which.

The image is built by scripts/build-detector-image from a clone of HEAD in which an untracked
file was planted (harness/images.py). The checks: the OCI revision label is HEAD; the list of
sources the binary was built from (/usr/share/detector-api/SOURCES in the image) is exactly the
tracked files of HEAD, byte for byte, without the planted file; a plain `docker build` of a
working tree leaves out what git ignores (.dockerignore).
"""

from __future__ import annotations

import hashlib
import json
import subprocess

from harness.images import REPO_ROOT, detector_image, head_revision
from harness.procs import run

REVISION_LABEL = "org.opencontainers.image.revision"


def _image_sources(image: str) -> dict[str, str]:
    listing = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat", image,
                   "/usr/share/detector-api/SOURCES"]).stdout
    sources = {}
    for line in listing.splitlines():
        digest, path = line.split(maxsplit=1)
        sources[path.lstrip("*")] = digest
    return sources


def _tracked_sources(revision: str) -> dict[str, str]:
    paths = run(["git", "-C", str(REPO_ROOT), "ls-tree", "-r", "--name-only", revision, "--",
                 "Cargo.toml", "Cargo.lock", "crates"]).stdout.splitlines()
    tracked = {}
    for path in paths:
        blob = subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "blob", f"{revision}:{path}"],
                              capture_output=True, check=True, timeout=30).stdout
        tracked[path] = hashlib.sha256(blob).hexdigest()
    return tracked


def test_the_revision_label_is_head():
    image = detector_image()
    labels = json.loads(run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}",
                             image.name]).stdout)
    assert labels[REVISION_LABEL] == head_revision() == image.revision


def test_the_image_was_built_from_exactly_the_tracked_sources_of_head():
    image = detector_image()
    in_image = _image_sources(image.name)
    assert image.untracked_probe not in in_image
    assert in_image == _tracked_sources(image.revision)


def test_dockerignore_leaves_out_everything_git_ignores():
    """A working-tree build (docker-compose build) must not pick up what git ignores."""
    ignored = [p.strip() for p in (REPO_ROOT / ".gitignore").read_text().splitlines()
               if p.strip() and not p.startswith(("#", "!"))]
    excluded = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith(("#", "!"))]
    assert ".git" in excluded
    for pattern in ignored:
        # .gitignore's "/x" and "/x/*" are .dockerignore's "x"; an unanchored "x" or "x/" is
        # "**/x" (which matches at the root of the context too).
        name = pattern.strip("/").removesuffix("/*")
        wanted = name if pattern.startswith("/") else f"**/{name}"
        assert wanted in excluded, f".dockerignore misses {pattern!r} (as {wanted!r})"
