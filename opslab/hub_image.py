"""The single-user image for Zero to JupyterHub and Binder, and the z2jh values for the course.

`python -m opslab.hub_image build` builds `hub/singleuser/Dockerfile` with section 02's
machinery (the same base image, wheels built on the host, the Docker API build): JupyterLab,
jupyterhub-singleuser and nbgitpuller, the learner distribution (never the solutions) and
nginx and Prometheus from Debian. The build is skipped when an image of the same content
exists. `python -m opslab.hub_image z2jh --capacity FILE` writes the Helm values: the image,
resource requests from measured capacity, idle culling and where a learner lands.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import shutil
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import docker
import yaml

import sample_app
from opslab import dist, images, registry

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HUB_DIR = ROOT / "hub"
SINGLEUSER_DIR = HUB_DIR / "singleuser"
Z2JH_DIR = HUB_DIR / "z2jh"
IMAGE_NAME = "localhost/opslab-singleuser"
CONTENT_LABEL = "org.opslab.content"
BUILDER_LABEL = "org.opslab.stage=singleuser-builder"
REQUIREMENTS = ROOT / "requirements.txt"
# Not in the learner's image: tests, lint, the book's build, benchmarks, fuzzing, and the
# browser driver (no Chromium in the image: the screenshot cell says so and skips).
# kubernetes-validate stays: section 08 validates the manifests in the learner's kernel.
DEV_ONLY = {
    "pytest", "pytest-timeout", "pytest-xdist", "nbval", "httpx2", "ruff", "py-spy",
    "gixy-ng", "schemathesis", "jupyter-book", "playwright", "axe-playwright-python",
}  # fmt: skip
# Hub-side, not user-side: z2jh runs the culler in the hub pod (`cull:`).
HUB_SIDE = {"jupyterhub-idle-culler"}
# jupyterhub-singleuser matches the hub of the z2jh chart it runs under (chart 4.4.0 ships
# JupyterHub 5.5.0), not the one-machine hub of requirements.txt; a major mismatch is refused.
SINGLEUSER_PINS = {"jupyterhub": "jupyterhub==5.5.0", "nbgitpuller": "nbgitpuller==1.3.0"}
# Debian bookworm's own Python is 3.11.2: wheels must not need a newer 3.11 (soupsieve 4 does).
PYTHON_VERSION = "3.11.2"
COURSE_DIR = "opslab-course"
FIRST_NOTEBOOK = f"lab/tree/{COURSE_DIR}/notebooks/00-setup.ipynb"


def _name(requirement: str) -> str:
    return images.requirement_name(requirement).lower()


def image_requirements(path: Path = REQUIREMENTS) -> list[str]:
    """The course's pins minus the developer tools, with the single-user server's own pins."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("-")]
    kept = [pin for pin in pins if _name(pin) not in DEV_ONLY | HUB_SIDE | set(SINGLEUSER_PINS)]
    return sorted(kept + list(SINGLEUSER_PINS.values()), key=_name)


def image_wheels(arch: str | None = None) -> Path:
    """Linux wheels for `image_requirements()`, for bookworm's own Python."""
    return images.linux_wheels(
        image_requirements(), python_version=PYTHON_VERSION, arch=arch, prefix="singleuser-"
    )


def build_context() -> Path:
    """A temporary build context: the Dockerfile, its two small files, wheels/ and course/."""
    ctx = Path(tempfile.mkdtemp(prefix="opslab-singleuser-"))
    registry.track_temp_dir(ctx)
    for name in ("Dockerfile", "opslab-start"):
        shutil.copy(SINGLEUSER_DIR / name, ctx / name)
    (ctx / "opslab-start").chmod(0o755)
    shutil.copy(ROOT / "binder" / "jupyterlab-overrides.json", ctx / "jupyterlab-overrides.json")
    shutil.copytree(image_wheels(), ctx / "wheels")
    # The learner distribution with its git history: section 01 clones the course checkout.
    dist.build(ctx / "course")
    (ctx / "course.tar.gz").unlink()
    return ctx


def content_digest(ctx: Path, base_id: str, buildargs: dict[str, str]) -> str:
    """A hash of what the image is made of: every context file but .git, the base, the args."""
    digest = hashlib.sha256(json.dumps([base_id, sorted(buildargs.items())]).encode())
    for path in sorted(p for p in ctx.rglob("*") if p.is_file()):
        relative = path.relative_to(ctx).as_posix()
        if relative.startswith("course/.git/") or relative.endswith(".tar.gz"):
            continue  # the distribution's commit carries a timestamp; its files are hashed
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class HubImage:
    """The single-user image: its tag, size, and whether this call built it (and how long)."""

    tag: str
    id: str
    size_mb: float
    content: str
    built: bool
    seconds: float


def ensure_image(
    client: docker.DockerClient, *, tag: str | None = None, apt_tools: str | None = None
) -> HubImage:
    """The single-user image of the current course: built unless one of the same content exists."""
    tag = tag or f"{IMAGE_NAME}:{sample_app.__version__}"
    base, _ = images.ensure_base_image(client)
    buildargs = {"BASE_IMAGE": base} | ({} if apt_tools is None else {"APT_TOOLS": apt_tools})
    ctx = build_context()
    try:
        content = content_digest(ctx, client.images.get(base).id, buildargs)
        existing = _image_or_none(client, tag)
        if existing is not None and existing.labels.get(CONTENT_LABEL) == content:
            log.info("%s is up to date (content %s)", tag, content)
            return HubImage(tag, existing.short_id, existing.attrs["Size"] / 1e6, content, False, 0)
        buildargs["CONTENT"] = content
        built = images.build_image(client, ctx, tag=tag, buildargs=buildargs)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if existing is not None and existing.id != built.image.id:
        with contextlib.suppress(docker.errors.APIError):  # in use by a container: kept
            client.images.remove(existing.id)  # the previous build, untagged: not kept
    _prune_builders(client)
    log.info("built %s (%.0f MB) in %.0f s", tag, built.size_mb, built.seconds)
    return HubImage(tag, built.id, built.size_mb, content, True, built.seconds)


def _prune_builders(client: docker.DockerClient) -> None:
    """Remove the builder stages of earlier builds; the newest stays (the pip layer's cache)."""
    stages = client.images.list(filters={"label": BUILDER_LABEL, "dangling": True})
    for stage in sorted(stages, key=lambda image: image.attrs["Created"])[:-1]:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(stage.id)


def _image_or_none(client: docker.DockerClient, tag: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


# ----- Zero to JupyterHub -----------------------------------------------------------------

HEADROOM = 1.5  # memory limit over the measured peak: a learner's run varies
MEMORY_STEP_MB = {"guarantee": 64, "limit": 128}
CULL = {"enabled": True, "users": False, "timeout": 3600, "every": 300}


def _round_up(value: float, step: float) -> float:
    return math.ceil(round(value / step, 6)) * step


def resources_from(capacity: dict) -> dict:
    """singleuser.memory and .cpu from measured capacity (`per_learner`: peak_mb, cores).

    `per_learner.peak_mb`: the peak memory of one learner's server over a whole section;
    `mean_cores` and `peak_cores`: CPU it used on average and at its busiest. The guarantee
    (a Kubernetes request) is what the scheduler reserves, the limit what a server may burst to.
    """
    learner = capacity["per_learner"]
    peak_mb, mean, peak = learner["peak_mb"], learner["mean_cores"], learner["peak_cores"]
    guarantee_mb = _round_up(peak_mb, MEMORY_STEP_MB["guarantee"])
    limit_mb = _round_up(peak_mb * HEADROOM, MEMORY_STEP_MB["limit"])
    return {
        "memory": {"limit": f"{int(limit_mb)}M", "guarantee": f"{int(guarantee_mb)}M"},
        "cpu": {
            "limit": max(1.0, _round_up(peak, 0.5)),
            "guarantee": round(max(0.05, _round_up(mean, 0.05)), 2),
        },
    }


def landing(repo: str | None, branch: str = "main") -> tuple[str, str]:
    """singleuser.defaultUrl and OPSLAB_SEED_COURSE: the image's copy, or nbgitpuller's clone."""
    if repo is None:
        return f"/{FIRST_NOTEBOOK}", "1"
    query = {"repo": repo, "branch": branch, "targetpath": COURSE_DIR, "urlpath": FIRST_NOTEBOOK}
    return f"/git-pull?{urllib.parse.urlencode(query)}", "0"


def z2jh_values(
    capacity: dict, *, image: str, tag: str, repo: str | None = None, branch: str = "main"
) -> dict:
    """The course's Helm values for the z2jh chart (only the keys the course decides)."""
    default_url, seed = landing(repo, branch)
    singleuser = {
        "image": {"name": image, "tag": tag, "pullPolicy": "IfNotPresent"},
        "cmd": "jupyterhub-singleuser",  # the image's ENTRYPOINT (tini, opslab-start) stays
        "defaultUrl": default_url,
        "uid": 1000,
        "fsGid": 100,
        "extraEnv": {"OPSLAB_SEED_COURSE": seed},
        **resources_from(capacity),
    }
    return {"singleuser": singleuser, "cull": dict(CULL)}


HEADER = """\
# Zero to JupyterHub (Helm chart `jupyterhub` 4.4.0) values for the Ops Lab course.
# GENERATED: python -m opslab.hub_image z2jh --capacity {capacity} > hub/z2jh/config.yaml
# Do not edit by hand: memory and cpu come from the measured capacity in {capacity}
# (opslab.hub_image.resources_from); tests/opslab/test_hub_image.py checks this file.
# Install: hub/README.md. Add your own keys (hub.config auth, proxy.https) in a second
# file: helm upgrade --install ... --values config.yaml --values site.yaml
# singleuser.memory and singleuser.cpu: {figures}
"""


def render(values: dict, capacity: dict, capacity_path: str) -> str:
    """The values as YAML, behind a header saying how they were made and from what."""
    measured = capacity.get("measured")
    figures = (
        f"from the measurement of {measured}"
        if measured
        else "PLACEHOLDERS (the capacity file is not a measurement yet)"
    )
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=False)
    return HEADER.format(capacity=capacity_path, figures=figures) + body


def bytes_of(quantity: str | float) -> int:
    """A z2jh byte quantity ("896M", "2G": powers of 1024, as KubeSpawner reads them) in bytes."""
    text = str(quantity)
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def singleuser_pod(values: dict, *, user: str = "learner") -> dict:
    """The user Pod the values imply, as KubeSpawner writes it (its container and security)."""
    su = values["singleuser"]
    container = {
        "name": "notebook",
        "image": f"{su['image']['name']}:{su['image']['tag']}",
        "imagePullPolicy": su["image"]["pullPolicy"],
        "args": [su["cmd"]] if isinstance(su["cmd"], str) else list(su["cmd"]),
        "ports": [{"name": "notebook-port", "containerPort": 8888}],
        "env": [{"name": k, "value": str(v)} for k, v in su["extraEnv"].items()]
        + [{"name": "JUPYTERHUB_DEFAULT_URL", "value": su["defaultUrl"]}],
        "resources": {
            "requests": {
                "memory": bytes_of(su["memory"]["guarantee"]),
                "cpu": su["cpu"]["guarantee"],
            },
            "limits": {"memory": bytes_of(su["memory"]["limit"]), "cpu": su["cpu"]["limit"]},
        },
        "securityContext": {"runAsUser": su["uid"], "allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"jupyter-{user}", "labels": {"component": "singleuser-server"}},
        "spec": {
            "securityContext": {"fsGroup": su["fsGid"]},
            "containers": [container],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": f"claim-{user}"}}],
        },
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: `build` the image, or print the `z2jh` values."""
    parser = argparse.ArgumentParser(prog="python -m opslab.hub_image", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the single-user image (skipped when current)")
    build.add_argument("--tag", help=f"default: {IMAGE_NAME}:{sample_app.__version__}")
    values = sub.add_parser("z2jh", help="print the z2jh Helm values (config.yaml)")
    values.add_argument("--capacity", type=Path, default=Z2JH_DIR / "capacity.json")
    values.add_argument("--image", default="ghcr.io/ORG/opslab-singleuser")
    values.add_argument("--tag", default=sample_app.__version__)
    values.add_argument("--repo", help="the learner repository: nbgitpuller clones it")
    values.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.command == "build":
        from opslab.containers import engine

        built = ensure_image(engine().client, tag=args.tag)
        log.info("%s  %s  %.0f MB", built.tag, built.id, built.size_mb)
        return 0
    capacity = json.loads(args.capacity.read_text())
    path = args.capacity.resolve()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else args.capacity
    config = z2jh_values(capacity, image=args.image, tag=args.tag, repo=args.repo,
                         branch=args.branch)  # fmt: skip
    sys.stdout.write(render(config, capacity, str(shown)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
