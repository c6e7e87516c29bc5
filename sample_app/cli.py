"""Command-line interface: `python -m sample_app serve | health-check | version | ...`."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import ValidationError

from sample_app.buildinfo import get_build_info, stamp
from sample_app.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


# Seconds a new worker may take to start before uvicorn gives up on all of them.
WORKER_START_TIMEOUT = 30


def _settings_or_exit(**overrides: object) -> Settings:
    """Load settings, or print every problem in one readable message and exit 2."""
    try:
        settings = load_settings(**overrides)
    except ValidationError as error:
        lines = [
            f"  - {'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in error.errors(include_input=False)
        ]
        _fail("invalid configuration:\n" + "\n".join(lines))
    if problems := settings.problems():
        _fail(
            str(ConfigError(problems, settings.app_env.value, defaulted=settings.app_env_defaulted))
        )
    return settings


def _fail(message: str) -> None:
    print(f"sample_app: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def _prepare_multiprocess_dir(settings: Settings) -> None:
    """Metrics files from a previous run would be counted again: start from empty.

    Only this instance's own subdirectory is emptied (and handed to the workers): blue
    and green may be given the same PROMETHEUS_MULTIPROC_DIR, and wiping it all at
    start reset the other, live instance's counters.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        name = settings.instance_id or f"{settings.host}-{settings.port}"
        own = Path(directory) / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        shutil.rmtree(own, ignore_errors=True)
        own.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the app under uvicorn with the configured timeouts."""
    overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None}
    settings = _settings_or_exit(**overrides)
    # Workers build their own app from the environment: hand the CLI's choices down.
    os.environ.update({k.upper(): str(v) for k, v in overrides.items()})
    _prepare_multiprocess_dir(settings)
    import uvicorn  # imported late: `version` and `health-check` stay fast

    from sample_app.logconfig import logging_config

    uvicorn.run(
        "sample_app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        uds=args.uds,
        workers=settings.workers,
        # Seconds, fractions kept: int() made SHUTDOWN_TIMEOUT=0.5 mean no grace at all.
        timeout_keep_alive=settings.idle_timeout,  # type: ignore[arg-type]  # float works
        timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
        # With several workers uvicorn stops everything if a new worker has not finished
        # starting within this many seconds (default 5): too short for a loaded small machine.
        timeout_worker_healthcheck=WORKER_START_TIMEOUT,
        log_config=logging_config(settings.log_level),
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
    )
    return 0


def cmd_health_check(args: argparse.Namespace) -> int:
    """Exit 0 when the health URL answers 200: what a container HEALTHCHECK runs."""
    url = args.url or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            ok = response.status == 200
            detail = f"{response.status}"
    except urllib.error.HTTPError as error:
        ok, detail = False, f"{error.code}"
    except (urllib.error.URLError, OSError) as error:
        ok, detail = False, f"unreachable ({getattr(error, 'reason', error)})"
    print(f"{url}: {'healthy' if ok else 'unhealthy'} ({detail})", file=sys.stderr)
    return 0 if ok else 1


def cmd_version(args: argparse.Namespace) -> int:
    """Print the build identity."""
    info = get_build_info()
    if args.json:
        print(json.dumps(info.as_dict()))
    else:
        print(
            f"sample_app {info.version} (commit {info.commit}, built {info.build_time}, "
            f"Python {info.python})"
        )
    return 0


def cmd_check_config(_args: argparse.Namespace) -> int:
    """Validate the configuration without starting: exit 0 when it may run."""
    settings = _settings_or_exit()
    print(
        f"configuration OK for APP_ENV={settings.app_env.value}"
        + (" (APP_ENV not set: production, the safe default)" if settings.app_env_defaulted else "")
    )
    return 0


def cmd_stamp(args: argparse.Namespace) -> int:
    """Write the build identity into the package before it is built."""
    info = stamp(args.version, args.commit, args.build_time)
    print(json.dumps(info.as_dict()))
    return 0


def cmd_build_assets(_args: argparse.Namespace) -> int:
    """Fingerprint the static assets and write the manifest the templates use."""
    from sample_app.assets import build_manifest

    print(json.dumps(build_manifest(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sample_app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", help="interface (HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (PORT; default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (WORKERS; default 1)")
    serve.add_argument(
        "--uds", help="listen on this Unix socket instead of HOST:PORT (behind a local proxy)"
    )
    serve.set_defaults(func=cmd_serve)
    health = sub.add_parser("health-check", help="exit 0 if the server answers /health")
    health.add_argument("--url", help="default http://127.0.0.1:$PORT/health")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(func=cmd_health_check)
    version = sub.add_parser("version", help="print version, commit and build time")
    version.add_argument("--json", action="store_true")
    version.set_defaults(func=cmd_version)
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.set_defaults(func=cmd_check_config)
    stamp_cmd = sub.add_parser("stamp", help="write build info into the package (build step)")
    stamp_cmd.add_argument("--version", dest="version")
    stamp_cmd.add_argument("--commit")
    stamp_cmd.add_argument("--build-time", dest="build_time")
    stamp_cmd.set_defaults(func=cmd_stamp)
    assets = sub.add_parser("build-assets", help="content-hash asset names (build step)")
    assets.set_defaults(func=cmd_build_assets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
