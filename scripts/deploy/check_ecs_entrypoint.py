#!/usr/bin/env python3
"""Runs deploy/ecs/shoal-ecs-entrypoint against a fake ECS task metadata endpoint.

    check_ecs_entrypoint.py SCRIPT

No ECS here: a loopback HTTP server answers like the task metadata endpoint v4 (the container
response, shaped after the Fargate example in the ECS developer guide, "Task metadata v4
examples"), and a stub `shoal` on PATH prints the arguments and variables it was exec'ed with.
The script runs under dash, Debian's /bin/sh and the runtime image's shell. Checked: the
advertised address is the task IP with the gossip port of SHOAL_CLUSTER_BIND, a preset
SHOAL_CLUSTER_ADVERTISE is kept and the endpoint left alone, `serve` is the default command,
SHOAL_ECS_DATA_ROOT gives a per-task data directory, and a missing endpoint or address fails
with a message. With several clusters: SHOAL_ECS_ADVERTISE fills in one
SHOAL_CLUSTERS_<NAME>_ADVERTISE per entry (and not SHOAL_CLUSTER_ADVERTISE), keeps preset ones,
refuses a name that is not a [[clusters]] name, and SHOAL_ECS_CONFIG_TOML becomes the file
SHOAL_CONFIG names. Run by scripts/check-deploy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TASK_IP = "10.0.2.106"
CONTAINER = {
    "DockerId": "cd189a933e5849daa93386466019ab50-2495160603",
    "Name": "shoal",
    "DockerName": "shoal",
    "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/shoal:0.1.0",
    "Labels": {
        "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/shoal",
        "com.amazonaws.ecs.container-name": "shoal",
        "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-west-2:111122223333:task/shoal/cd189a933e5849daa93386466019ab50",
    },
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "Limits": {"CPU": 1024, "Memory": 2048},
    "Type": "NORMAL",
    "Networks": [
        {
            "NetworkMode": "awsvpc",
            "IPv4Addresses": [TASK_IP],
            "AttachmentIndex": 0,
            "MACAddress": "0a:de:f6:10:51:e5",
            "IPv4SubnetCIDRBlock": "10.0.2.0/24",
            "DomainNameServers": ["10.0.0.2"],
            "DomainNameSearchList": ["us-west-2.compute.internal"],
            "PrivateDNSName": "ip-10-0-2-106.us-west-2.compute.internal",
            "SubnetGatewayIpv4Address": "10.0.2.1/24",
        }
    ],
}

failures: list[str] = []
requests: list[str] = []


class Metadata(BaseHTTPRequestHandler):
    body: dict = CONTAINER

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        requests.append(self.path)
        if self.path != "/v4/container-id":
            self.send_error(404)
            return
        data = json.dumps(Metadata.body, indent=4).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


def check(ok: bool, message: str) -> None:
    if not ok:
        failures.append(message)


def main() -> int:
    script = Path(sys.argv[1]).resolve()
    shell = shutil.which("dash") or "/bin/sh"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v4/container-id"
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "bin"
        stub.mkdir()
        (stub / "shoal").write_text(
            '#!/bin/sh\nprintf "args=%s\\n" "$*"\n'
            'printf "advertise=%s\\n" "${SHOAL_CLUSTER_ADVERTISE:-}"\n'
            'printf "data_dir=%s\\n" "${SHOAL_DATA_DIR:-}"\n'
            'printf "eu_west=%s\\n" "${SHOAL_CLUSTERS_EU_WEST_ADVERTISE:-}"\n'
            'printf "global=%s\\n" "${SHOAL_CLUSTERS_GLOBAL_ADVERTISE:-}"\n'
            'printf "config=%s\\n" "${SHOAL_CONFIG:-}"\n'
        )
        (stub / "shoal").chmod(0o755)
        base = {"PATH": f"{stub}:{os.environ['PATH']}", "ECS_CONTAINER_METADATA_URI_V4": endpoint}

        def run(args: list[str], **env: str) -> tuple[int, dict[str, str], str]:
            environment = {**base, **env}
            for k in [k for k, v in environment.items() if v is None]:
                del environment[k]
            p = subprocess.run([shell, str(script), *args], env=environment, capture_output=True, text=True,
                               timeout=30, check=False)
            out = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
            return p.returncode, out, p.stderr

        code, out, err = run(["serve"], SHOAL_CLUSTER_BIND="0.0.0.0:7946")
        check(code == 0 and out.get("advertise") == f"{TASK_IP}:7946" and out.get("args") == "serve",
              f"serve: want advertise {TASK_IP}:7946, got {code} {out} {err}")

        code, out, err = run([], SHOAL_CLUSTER_BIND="0.0.0.0:7947")
        check(code == 0 and out.get("args") == "serve" and out.get("advertise") == f"{TASK_IP}:7947",
              f"no arguments: want serve advertising the bind port 7947, got {code} {out} {err}")

        code, out, err = run(["admin", "create", "--username", "admin", "--generate"])
        check(code == 0 and out.get("args") == "admin create --username admin --generate"
              and out.get("advertise") == f"{TASK_IP}:7946",
              f"CLI command: arguments passed through, advertise set (default port), got {code} {out} {err}")

        before = len(requests)
        code, out, err = run(["serve"], SHOAL_CLUSTER_ADVERTISE="192.0.2.7:7946")
        check(code == 0 and out.get("advertise") == "192.0.2.7:7946" and len(requests) == before,
              f"preset advertise must be kept without asking the endpoint, got {code} {out} {err}")

        data_root = Path(tmp) / "efs"
        data_root.mkdir()
        hostname = Path("/proc/sys/kernel/hostname").read_text().strip()
        code, out, err = run(["serve"], SHOAL_ECS_DATA_ROOT=str(data_root))
        check(code == 0 and out.get("data_dir") == f"{data_root}/{hostname}" and (data_root / hostname).is_dir(),
              f"SHOAL_ECS_DATA_ROOT: want {data_root}/{hostname} created, got {code} {out} {err}")

        code, out, err = run(["serve"], ECS_CONTAINER_METADATA_URI_V4=None)
        check(code == 78 and "ECS_CONTAINER_METADATA_URI_V4 is not set" in err and not out,
              f"no endpoint: must fail before exec with a message, got {code} {out} {err}")

        # Several clusters: one advertised address per [[clusters]] entry, on its own port.
        two = "eu-west:7946 global:7947"
        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE=two)
        check(code == 0 and out.get("eu_west") == f"{TASK_IP}:7946" and out.get("global") == f"{TASK_IP}:7947"
              and out.get("advertise") == "",
              f"SHOAL_ECS_ADVERTISE: want both clusters advertised and no SHOAL_CLUSTER_ADVERTISE, got {code} {out} {err}")

        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE=two, SHOAL_CLUSTERS_GLOBAL_ADVERTISE="192.0.2.9:7947")
        check(code == 0 and out.get("eu_west") == f"{TASK_IP}:7946" and out.get("global") == "192.0.2.9:7947",
              f"SHOAL_ECS_ADVERTISE: a preset entry must be kept, the other filled in, got {code} {out} {err}")

        before = len(requests)
        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE=two, SHOAL_CLUSTERS_EU_WEST_ADVERTISE="192.0.2.8:7946",
                             SHOAL_CLUSTERS_GLOBAL_ADVERTISE="192.0.2.9:7947")
        check(code == 0 and out.get("eu_west") == "192.0.2.8:7946" and len(requests) == before,
              f"SHOAL_ECS_ADVERTISE: all preset, the endpoint must be left alone, got {code} {out} {err}")

        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE="EU;x=1:7946")
        check(code == 78 and "expected NAME:PORT with a [[clusters]] name" in err and not out,
              f"SHOAL_ECS_ADVERTISE: a name that is not a [[clusters]] name must be refused, got {code} {out} {err}")

        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        toml = '[[clusters]]\nname = "eu-west"\n'
        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE=two, SHOAL_DATA_DIR=str(data_dir), SHOAL_ECS_CONFIG_TOML=toml)
        written = data_dir / "shoal-ecs.toml"
        check(code == 0 and out.get("config") == str(written) and written.is_file() and written.read_text() == toml + "\n",
              f"SHOAL_ECS_CONFIG_TOML: want it written to {written} and named by SHOAL_CONFIG, got {code} {out} {err}")

        code, out, err = run(["serve"], SHOAL_ECS_ADVERTISE=two, SHOAL_DATA_DIR=str(data_dir), SHOAL_ECS_CONFIG_TOML=toml,
                             SHOAL_CONFIG="/etc/shoal.toml")
        check(code == 78 and "both set" in err and not out,
              f"SHOAL_ECS_CONFIG_TOML beside SHOAL_CONFIG must be refused, got {code} {out} {err}")

        Metadata.body = {**CONTAINER, "Networks": [{"NetworkMode": "bridge", "IPv4Addresses": []}]}
        code, out, err = run(["serve"])
        check(code == 78 and "no IPv4 address" in err and not out,
              f"no IPv4 address: must fail with a message, got {code} {out} {err}")
    server.shutdown()
    for f in failures:
        print(f"ecs-entrypoint: FAIL {f}", file=sys.stderr)
    if not failures:
        print(f"ecs-entrypoint: 13 cases passed under {shell} against a fake task metadata endpoint")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
