"""What the node reads and needs, as the node itself reports it (`shoal constants`), so that the
deployment artifacts cannot drift from the code. scripts/check-deploy writes that report to a
file and names it in SHOAL_DEPLOY_CONSTANTS; used by scripts/deploy/check_*.py."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def _report() -> dict:
    path = os.environ.get("SHOAL_DEPLOY_CONSTANTS")
    if not path:
        sys.exit("SHOAL_DEPLOY_CONSTANTS is not set: run the checks through scripts/check-deploy, "
                 "or set it to a file holding the output of `shoal constants`")
    return json.loads(Path(path).read_text())


CONSTANTS = _report()
# The values SHOAL_DISCOVERY_METHOD (and `discovery.method`) accepts.
DISCOVERY_METHODS: set[str] = set(CONSTANTS["discovery_methods"])
# What ECS discovery calls (`ECS_IAM_ACTIONS`; a unit test there keeps it equal to the API calls
# the provider makes).
ECS_IAM_ACTIONS: list[str] = sorted(CONSTANTS["ecs_iam_actions"])
# What Kubernetes discovery calls on `pods` in the core API group (`KUBERNETES_POD_VERBS`).
KUBERNETES_POD_VERBS: list[str] = CONSTANTS["kubernetes_pod_verbs"]

# Variables a deployment artifact may set ahead of the code that reads them (none today).
# A name leaves this list when the node starts reading it.
PLANNED: set[str] = set()


def known_env(root: Path, ecs_entrypoint: bool = False) -> set[str]:
    """The node's overrides and secret variables (their *_FILE forms are overrides), the CLI's
    own variables (SHOAL_CONFIG) and, for ECS task definitions, the variables the image's ECS
    entrypoint reads itself (SHOAL_ECS_*)."""
    names = {o["var"] for o in CONSTANTS["env_overrides"]}
    names |= {s["var"] for s in CONSTANTS["secrets"]}
    names |= set(CONSTANTS["cli_env"])
    if ecs_entrypoint:
        script = (root / "deploy/ecs/shoal-ecs-entrypoint").read_text()
        names |= set(re.findall(r"\$\{?(SHOAL_ECS_[A-Z_]+)", script))
    return names


def unknown(root: Path, names, ecs_entrypoint: bool = False) -> tuple[list[str], list[str]]:
    """(names the node (or, with ecs_entrypoint, the ECS entrypoint) will never read, planned
    names not read yet)."""
    known = known_env(root, ecs_entrypoint)
    names = {n for n in names if n.startswith("SHOAL_")}
    return sorted(names - known - PLANNED), sorted((names & PLANNED) - known)
