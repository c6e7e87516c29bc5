"""How many learners this machine holds: k learners run one section at once, each as a Unix
user of the class hub in that learner's cgroups and PID namespace (what a server on the hub
gets), for k = 1, 2, ... until one of them fails or takes longer than the bound.

`python -m opslab.hub_capacity [--section NAME] [--max K] [--bound S]` (root) writes
`_build/hub/capacity.json` (the per-learner figures `opslab.hub_image z2jh` sizes a cluster
from) and `_build/hub/capacity.md` (the table for the instructor guide). Not part of
`make test`: it loads the machine on purpose. The learners it creates are deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pwd
import secrets
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from opslab import hub, hub_classes, hub_learners

log = logging.getLogger(__name__)

OUT = hub.ROOT / "_build" / "hub"
SAMPLE_SECONDS = 0.5


@dataclass
class Run:
    """One learner's run of the section: how long, whether it passed, what it used."""

    learner: str
    wall_s: float
    passed: bool
    peak_mb: float
    cpu_s: float
    peak_cores: float


def learner_env(name: str, python: Path) -> dict[str, str]:
    """The environment the hub gives a learner's server (write_config, LimitedSpawner)."""
    home = pwd.getpwnam(name).pw_dir
    return {
        **hub.learner_environment(python.parent),
        "HOME": home, "USER": name, "SHELL": "/bin/bash", "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(home) / hub_classes.COURSE_DIR),
    }  # fmt: skip


def create_learner(name: str, repo: Path) -> None:
    """A learner as the hub creates one, with the course cloned into the home."""
    subprocess.run([*hub_learners.ADD_USER, name], check=True)
    home = pwd.getpwnam(name).pw_dir
    clone = ["git", "clone", "--quiet", str(repo), hub_classes.COURSE_DIR]
    env = {"HOME": home, "GIT_CONFIG_GLOBAL": str(hub.gitconfig()), "PATH": "/usr/bin:/bin"}
    subprocess.run([*hub_classes.become(name), *clone], cwd=home, env=env, check=True)


def start_section(name: str, section: str, python: Path) -> subprocess.Popen[bytes]:
    """Run the section top to bottom as the learner, inside the learner's limits."""
    entry = pwd.getpwnam(name)
    dirs = hub_classes.make_cgroups(
        name, hub_classes.MEM_LIMIT, hub_classes.CPU_LIMIT, hub_classes.MAX_PIDS
    )
    notebook = f"{hub_classes.COURSE_DIR}/notebooks/{section}"
    run = shlex.join([str(python), "-m", "opslab.nbexec", "--force", notebook])
    return subprocess.Popen(
        [*hub_classes.namespace_cmd(entry.pw_uid, entry.pw_gid), run],
        env=learner_env(name, python),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=hub_classes.join_hook(dirs, lambda: os.chdir(entry.pw_dir)),
    )


def run_level(names: list[str], section: str, python: Path, bound: float) -> list[Run]:
    """All the learners at once; CPU sampled every SAMPLE_SECONDS for the peak in cores."""
    started = time.monotonic()
    procs = {n: start_section(n, section, python) for n in names}
    dirs = {n: hub_classes.cgroup_dirs(n) for n in names}
    last = dict.fromkeys(names, (started, 0.0))
    peak = dict.fromkeys(names, 0.0)
    ended: dict[str, float] = {}
    while len(ended) < len(names):
        time.sleep(SAMPLE_SECONDS)
        now = time.monotonic()
        for name, proc in procs.items():
            if name in ended:
                continue
            cpu = hub_classes.usage(dirs[name])["cpu_s"]
            peak[name] = max(peak[name], (cpu - last[name][1]) / (now - last[name][0]))
            last[name] = (now, cpu)
            if proc.poll() is not None or now - started > 3 * bound:
                ended[name] = now
    runs = []
    for name, proc in procs.items():
        if proc.poll() is None:  # far past the bound: stop it, it counts as failed
            hub_classes.kill_all(dirs[name])
        used = hub_classes.usage(dirs[name])
        passed = proc.wait() == 0
        runs.append(Run(name, round(ended[name] - started, 1), passed, used["peak_mb"],
                        used["cpu_s"], round(peak[name], 2)))  # fmt: skip
        hub_classes.kill_all(dirs[name])
    return runs


def measure(section: str, max_learners: int, bound: float) -> dict:
    """Levels 1..max_learners (stopping at the first that fails the bound)."""
    python, repo = hub.python_env(), hub.course_repo()
    subprocess.run(["groupadd", "--force", hub_learners.LEARNER_GROUP], check=True)
    names = [f"cap{secrets.token_hex(2)}-{i}" for i in range(1, max_learners + 1)]
    levels = []
    try:
        for name in names:
            create_learner(name, repo)
        for k in range(1, max_learners + 1):
            runs = run_level(names[:k], section, python, bound)
            ok = all(r.passed and r.wall_s <= bound for r in runs)
            levels.append({"learners": k, "ok": ok, "runs": [asdict(r) for r in runs]})
            log.info("%d learner(s): %s", k, ", ".join(f"{r.wall_s} s" for r in runs))
            if not ok:
                break
    finally:
        hub_learners.remove_learners(names)
    return summarize(section, bound, levels)


def summarize(section: str, bound: float, levels: list[dict]) -> dict:
    """The capacity file: the machine, one learner's figures, every level, the answer."""
    alone = levels[0]["runs"][0]
    mean_cores = alone["cpu_s"] / alone["wall_s"] if alone["wall_s"] else 0.0
    held = [lv["learners"] for lv in levels if lv["ok"]]
    return {
        "measured": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "memory_gb": round(_mem_total() / 2**30, 1)},
        "section": section,
        "bound_s": bound,
        "limits": {"memory_mb": hub_classes.MEM_LIMIT // 2**20, "cpus": hub_classes.CPU_LIMIT},
        "per_learner": {
            "peak_mb": alone["peak_mb"],
            "mean_cores": round(mean_cores, 2),
            "peak_cores": alone["peak_cores"],
        },
        "levels": levels,
        "holds": max(held, default=0),
        "tried": levels[-1]["learners"],
    }


def combine(results: list[dict]) -> dict:
    """Several sections' measurements as one: a learner needs the most any section took, and
    the machine holds what the heaviest section allows."""
    worst = {
        key: max(r["per_learner"][key] for r in results)
        for key in ("peak_mb", "mean_cores", "peak_cores")
    }
    return {
        "measured": max(r["measured"] for r in results),
        "machine": results[0]["machine"],
        "bound_s": results[0]["bound_s"],
        "limits": results[0]["limits"],
        "per_learner": worst,
        "holds": min(r["holds"] for r in results),
        "sections": {r["section"]: r for r in results},
    }


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def table(result: dict) -> str:
    """The sizing table (Markdown): one row per section and level."""
    rows = [
        "| section | learners at once | slowest run (s) | all passed | peak memory, each (MB) |",
        "|---|---:|---:|:---:|---:|",
    ]
    for section in result.get("sections", {result.get("section"): result}).values():
        for level in section["levels"]:
            rows.append(_row(section["section"], level))
    return "\n".join(rows) + "\n"


def _row(section: str, level: dict) -> str:
    runs = level["runs"]
    return (
        f"| {section} | {level['learners']} | {max(r['wall_s'] for r in runs):.1f} | "
        f"{'yes' if all(r['passed'] for r in runs) else 'no'} | "
        f"{max(r['peak_mb'] for r in runs):.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: measure and write capacity.json and capacity.md."""
    parser = argparse.ArgumentParser(prog="python -m opslab.hub_capacity", description=__doc__)
    parser.add_argument("--section", default="07-blue-green-deploy.ipynb")  # the longest
    parser.add_argument("--max", type=int, default=4, dest="max_learners")
    parser.add_argument("--bound", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--combine", type=Path, nargs="+", help="merge measured capacity.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.combine:
        result = combine([json.loads(path.read_text()) for path in args.combine])
    elif os.getuid() != 0:
        parser.error("creates Unix users and cgroups: run it as root")
    else:
        result = measure(args.section, args.max_learners, args.bound)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capacity.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "capacity.md").write_text(table(result))
    print(table(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
