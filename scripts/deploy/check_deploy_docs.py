#!/usr/bin/env python3
"""Every repository path the deployment guides cite exists.

    check_deploy_docs.py REPO_ROOT

docs/deploy-*.md (and the chart's and module's READMEs) name files as `path/in/the/repo`; a
renamed or deleted file would leave a guide pointing nowhere. Run by scripts/check-deploy.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOTS = ("deploy/", "docs/", "helm/", "scripts/", "server/", "terraform/", "migrations/")
FILES = ("Dockerfile", "docker-compose.yml", "README.md", ".dockerignore")
# Written by deploy/compose/make-secrets on the operator's machine, git-ignored.
GENERATED = ("deploy/compose/secrets/",)


def main() -> int:
    root = Path(sys.argv[1])
    guides = sorted(root.glob("docs/deploy-*.md")) + [root / "helm/shoal/README.md",
                                                      root / "terraform/modules/shoal-ecs/README.md"]
    failures = []
    cited = 0
    for guide in guides:
        if not guide.is_file():
            failures.append(f"{guide.relative_to(root)} missing")
            continue
        for n, line in enumerate(guide.read_text().splitlines(), 1):
            for token in re.findall(r"`([^`\s]+)`", line):
                path = token.rstrip(".,:;")
                if not (path.startswith(ROOTS) or path in FILES) or path.startswith(GENERATED) \
                        or any(c in path for c in "<>*$"):
                    continue
                cited += 1
                if not (root / path).exists():
                    failures.append(f"{guide.relative_to(root)}:{n}: `{path}` does not exist")
    for f in failures:
        print(f"docs: FAIL {f}", file=sys.stderr)
    if not failures:
        print(f"docs: {len(guides)} guides, {cited} cited repository paths exist")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
