#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with the reference client's parser
(prometheus_client) and prints the families as JSON: {name: {"type", "samples": [{"name",
"labels", "value"}]}}. Exits non-zero, naming the problem, when the text does not parse."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
try:
    for family in text_string_to_metric_families(sys.stdin.read()):
        families[family.name] = {
            "type": family.type,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
            ],
        }
except ValueError as e:
    sys.exit("not valid Prometheus text: %s" % e)
json.dump(families, sys.stdout)
