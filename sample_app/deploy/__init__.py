"""Blue-green deploys of the sample app behind nginx: `python -m sample_app.deploy ...`.

What an operator runs on the server. A new release (green) starts next to the live one
(blue) on its own Unix socket; only once it is ready, reports the expected version and
nginx serves its static files, the socket nginx sends to is switched to it (no nginx
reload) and blue is drained and stopped. Any failed step stops green and leaves blue
serving. Knows nothing of the course.
"""

from __future__ import annotations

from sample_app.deploy.instances import (
    DeployError,
    Instance,
    install_release,
    running_from,
    start_instance,
    stop_all,
    stop_instance,
    wait_ready,
)
from sample_app.deploy.nginxconf import APP_TEMPLATE, DEFAULTS, render_app_conf
from sample_app.deploy.tool import deploy, rollback, status

__all__ = [
    "APP_TEMPLATE",
    "DEFAULTS",
    "DeployError",
    "Instance",
    "deploy",
    "install_release",
    "render_app_conf",
    "rollback",
    "running_from",
    "start_instance",
    "status",
    "stop_all",
    "stop_instance",
    "wait_ready",
]
