"""`python -m sample_app.deploy [--state-dir DIR] init|install|deploy|rollback|status|stop`.

Settings reach releases from `--env-file FILE` (KEY=VALUE lines; keep it 0600) or
`--env NAME` (copied from this command's environment), never as a value on the command
line, where every user of the machine can read it in `ps`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from sample_app.deploy.instances import DeployError, env_from_args, install_release, stop_all
from sample_app.deploy.tool import deploy, init, rollback, status, stop

EXIT_FAILED = 1


def _env_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME", help="pass NAME from here"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sample_app.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--state-dir", default=os.environ.get("DEPLOY_STATE_DIR", "deploy-state"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="point nginx at the live socket; settings all releases share")
    p.add_argument("--nginx", required=True, help="JSON file: prefix, conf, app_conf, url, values")
    _env_options(p)
    p = sub.add_parser("install", help="install a wheel as a new release directory")
    p.add_argument("wheel")
    p.add_argument("--into", required=True, help="directory holding the releases")
    p.add_argument("--name", required=True)
    _env_options(p)
    p = sub.add_parser("deploy", help="blue-green deploy of an installed release")
    p.add_argument("--release", required=True, help="an installed release directory")
    p.add_argument("--expect-version", required=True)
    for name in ("deploy", "rollback"):
        p = p if name == "deploy" else sub.add_parser(name, help="deploy the previous release")
        p.add_argument("--ready-timeout", type=float, default=20.0)
        p.add_argument("--confirm", type=int, default=5, help="requests in a row via nginx")
        p.add_argument("--stop-timeout", type=float, default=15.0)
    sub.add_parser("status", help="what is live and what a rollback restores")
    sub.add_parser("stop", help="stop the live instance")
    p = sub.add_parser("stop-all", help="stop every instance running from a releases directory")
    p.add_argument("--releases", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    options = {}
    if args.command in ("deploy", "rollback"):
        options = {
            "ready_timeout": args.ready_timeout,
            "confirm": args.confirm,
            "stop_timeout": args.stop_timeout,
        }
    if args.command == "init":
        env = env_from_args(args.env, args.env_file)  # refused before anything is read
        with open(args.nginx) as file:
            nginx = json.load(file)
        init(args.state_dir, nginx=nginx, env=env)
    elif args.command == "install":
        env = env_from_args(args.env, args.env_file)
        print(install_release(args.wheel, args.into, args.name, env=env))
    elif args.command == "deploy":
        deploy(args.state_dir, args.release, expect_version=args.expect_version, **options)
    elif args.command == "rollback":
        rollback(args.state_dir, **options)
    elif args.command == "status":
        print(json.dumps(status(args.state_dir), indent=2))
    elif args.command == "stop":
        print(stop(args.state_dir))
    elif args.command == "stop-all":
        stopped = stop_all(args.releases)
        print("\n".join(f"{pid}: {how}" for pid, how in stopped.items()) or "nothing running")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit 1 with the reason when a step fails."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d deploy: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (DeployError, OSError) as error:
        logging.getLogger("sample_app.deploy").error("FAILED: %s", error)
        return EXIT_FAILED
    return 0
