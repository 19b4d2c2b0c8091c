"""The SHOAL_* environment variables a node reads, taken from the code so that deployment
artifacts cannot drift from it (used by scripts/check_*.py)."""

from __future__ import annotations

import re
from pathlib import Path

# Variables a deployment artifact may set ahead of the code that reads them (none today).
# A name leaves this list when load.rs starts reading it.
PLANNED: set[str] = set()

SECRETS = ("SHOAL_DATABASE_URL", "SHOAL_CLUSTER_PSK", "SHOAL_SECRETS_KEY")


def known_env(root: Path, ecs_entrypoint: bool = False) -> set[str]:
    """The overrides and secret variables of shoal-config's load.rs, their *_FILE forms, the
    CLI's own variables (SHOAL_CONFIG) and, for ECS task definitions, the variables the image's
    ECS entrypoint reads itself (SHOAL_ECS_*)."""
    load = (root / "server/shoal-config/src/load.rs").read_text()
    names = set(re.findall(r'"(SHOAL_[A-Z_]+)"', load))
    names |= {f"{n}_FILE" for n in SECRETS}
    main = (root / "server/shoal/src/main.rs").read_text()
    names |= set(re.findall(r'env = "(SHOAL_[A-Z_]+)"', main))
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
