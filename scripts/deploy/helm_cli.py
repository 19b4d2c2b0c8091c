#!/usr/bin/env python3
"""`helm template` and `helm lint --strict` for this repository, on the Helm SDK
(helm-python-sdk), since no helm binary is installed here. Run through
scripts/deploy/helm-template and scripts/deploy/helm-lint, which provide the venv."""

from __future__ import annotations

import argparse
import json
import sys

import helm_python
import yaml


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="helm_cli.py")
    parser.add_argument("command", choices=["template", "lint"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    parser.add_argument("--set-json", action="append", default=[], help="JSON object merged over the values (repeatable)")
    parser.add_argument("--name", default="shoal", help="release name")
    parser.add_argument("--namespace", default="default", help="release namespace")
    args = parser.parse_args()

    values: dict = {}
    for path in args.values:
        with open(path) as f:
            values = merge(values, yaml.safe_load(f) or {})
    for text in args.set_json:
        values = merge(values, json.loads(text))

    try:
        if args.command == "lint":
            report = helm_python.lint(args.chart, values, strict=True, namespace=args.namespace)
            severity = {1: "INFO", 2: "WARNING", 3: "ERROR"}
            for m in report["messages"]:
                print(f"[{severity.get(m['severity'], 'UNKNOWN')}] {m['path']}: {m['error']}")
            bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
            print(f"{report['total_charts_linted']} chart(s) linted, {len(bad)} failed")
            return 1 if bad else 0
        rendered = helm_python.Chart.load(args.chart).render(
            values, name=args.name, namespace=args.namespace, is_install=True
        )
    except helm_python.HelmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") or not rendered[path].strip():
            continue
        print(f"---\n# Source: {path}\n{rendered[path].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
