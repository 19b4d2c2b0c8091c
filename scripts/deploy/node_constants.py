"""What the node reads and needs, as the node itself reports it (`shoal constants`), so that the
deployment artifacts cannot drift from the code, and its loader for the configurations they
render. scripts/check-deploy writes that report to a file and names it in
SHOAL_DEPLOY_CONSTANTS, and the binary in SHOAL_DEPLOY_SHOAL; used by scripts/deploy/check_*.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
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

# A [[clusters]] entry NAME takes CLUSTER_ENV_PREFIX<NAME>_<SETTING> (NAME upper-cased, '-' as
# '_'): SHOAL_CLUSTERS_EU_WEST_ADVERTISE.
CLUSTER_ENV_PREFIX: str = CONSTANTS["cluster_env_prefix"]
# What such a variable may set (shoal-config, load/clusters.rs; PSK is the cluster's keys).
CLUSTER_ENV_SETTINGS = ("BIND", "ADVERTISE", "PSK_FILE", "DISABLED", "PSK")
# The [services] keys that name a cluster once several are enabled.
SERVICES = ("counters", "cache", "events", "global_counters")


def cluster_env(cluster: str, setting: str) -> str:
    """The variable that sets `setting` of the [[clusters]] entry named `cluster`."""
    return f"{CLUSTER_ENV_PREFIX}{cluster.upper().replace('-', '_')}_{setting}"


# Variables a deployment artifact may set ahead of the code that reads them (none today).
# A name leaves this list when the node starts reading it.
PLANNED: set[str] = set()


def known_env(root: Path, ecs_entrypoint: bool = False, clusters=()) -> set[str]:
    """The node's overrides and secret variables (their *_FILE forms are overrides), the CLI's
    own variables (SHOAL_CONFIG), the per-cluster variables of the [[clusters]] entries named
    `clusters` and, for ECS task definitions, the variables the image's ECS entrypoint reads
    itself (SHOAL_ECS_*)."""
    names = {cluster_env(c, s) for c in clusters for s in CLUSTER_ENV_SETTINGS}
    names |= {o["var"] for o in CONSTANTS["env_overrides"]}
    names |= {s["var"] for s in CONSTANTS["secrets"]}
    names |= set(CONSTANTS["cli_env"])
    if ecs_entrypoint:
        script = (root / "deploy/ecs/shoal-ecs-entrypoint").read_text()
        names |= set(re.findall(r"\$\{?(SHOAL_ECS_[A-Z_]+)", script))
    return names


def unknown(root: Path, names, ecs_entrypoint: bool = False, clusters=()) -> tuple[list[str], list[str]]:
    """(names the node (or, with ecs_entrypoint, the ECS entrypoint) will never read, planned
    names not read yet); `clusters` are the [[clusters]] entries the config names."""
    known = known_env(root, ecs_entrypoint, clusters)
    names = {n for n in names if n.startswith("SHOAL_")}
    return sorted(names - known - PLANNED), sorted((names & PLANNED) - known)


def check_config(files: dict[str, str], env: dict[str, str]) -> str | None:
    """Loads a rendered configuration with the node's own loader (`shoal check-config`, the
    binary SHOAL_DEPLOY_SHOAL names) as a container would see it: `files` maps container paths
    (the config file, key files) to their contents. Those paths, and the data directory, are
    moved under a scratch directory wherever the files and `env` name them. None when the node
    accepts the configuration, else its message."""
    shoal = os.environ.get("SHOAL_DEPLOY_SHOAL")
    if not shoal:
        sys.exit("SHOAL_DEPLOY_SHOAL is not set: run the checks through scripts/check-deploy, or set it to "
                 "the shoal binary whose loader checks the rendered configurations")
    with tempfile.TemporaryDirectory() as tmp:
        # One pass, longest path first, so that a moved path is never moved again.
        paths = re.compile("|".join(re.escape(p) for p in sorted([*files, "/var/lib/shoal"], key=len, reverse=True)))

        def moved(text: str) -> str:
            return paths.sub(lambda m: f"{tmp}{m.group(0)}", text)

        for path, content in files.items():
            target = Path(f"{tmp}{path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(moved(content))
        environment = {k: moved(v) for k, v in env.items()}
        environment["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        run = subprocess.run([shoal, "check-config"], env=environment, capture_output=True, text=True,
                             timeout=60, check=False)
    if run.returncode == 0:
        return None
    return (run.stderr or run.stdout).strip().replace(tmp, "")
