#!/usr/bin/env python3
"""Static checks of docker-compose.yml (no Docker engine here, so no `docker compose config`).

    check_compose.py REPO_ROOT

Validates the file against the Compose specification (compose-spec: the Rust `compose_spec`
parser, which refuses unknown keys and bad values) after YAML anchors and merge keys are
resolved, then asserts what the demo relies on: PostgreSQL 15, three Shoal nodes with static
discovery naming each other and a fixed advertised IP, nginx in front of them waiting for
their readiness with the admin surface (the nodes' 8080: console, admin API, /ready, /metrics)
on a listener of its own published on loopback only and no data-plane server leading to it, an
S3 backend, the admin bootstrap job, secrets only as files from
deploy/compose/secrets/ (git-ignored) as a copy of make-secrets run in a scratch directory
writes them, resource ports on every interface (SHOAL_PROXY_ADDRESS), and only SHOAL_*
variables the node knows about. Then deploy/compose/regions.yml, the two-region layout: each
region's nodes in a regional cluster and all of them in a global one, each cluster on its own
network, port and key, configured by a file per region (deploy/compose/regions/*.toml) that the
node's own loader accepts.
Run by scripts/check-deploy inside .venv-deploy.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets as random_keys
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml
from compose_spec import PyCompose
from node_constants import SERVICES, check_config, cluster_env, unknown

NODES = ["shoal-1", "shoal-2", "shoal-3"]
failures: list[str] = []


def check(ok: bool, message: str) -> None:
    if not ok:
        failures.append(f"docker-compose.yml: {message}")


def main() -> int:
    root = Path(sys.argv[1])
    path = root / "docker-compose.yml"
    spec = yaml.safe_load(path.read_text())
    try:
        PyCompose.from_json(json.dumps(spec))
    except ValueError as e:
        failures.append(f"docker-compose.yml does not follow the Compose specification: {e}")

    services = spec.get("services", {})
    secrets = spec.get("secrets", {})
    for name in ["postgres", *NODES, "nginx", "s3", "admin-bootstrap"]:
        check(name in services, f"service {name} missing")
    if failures:
        return report()

    check(services["postgres"]["image"].startswith("postgres:15"), "PostgreSQL must be version 15")
    check("minio" in services["s3"]["image"], "the S3 backend is expected to be MinIO")
    network = ipaddress.ip_network(spec["networks"]["shoal"]["ipam"]["config"][0]["subnet"])
    advertised = set()

    for name in NODES:
        svc = services[name]
        env = svc["environment"]
        never, planned = unknown(root, env)
        check(not never and not planned, f"{name}: SHOAL_* variables the node does not read: {never + planned}")
        peers = env.get("SHOAL_DISCOVERY_STATIC_PEERS", "").split(",")
        check(sorted(peers) == sorted(f"{n}:7946" for n in NODES), f"{name}: static peers must name the three nodes on 7946")
        check(env.get("SHOAL_HTTP_LISTEN") == "0.0.0.0:8080", f"{name}: SHOAL_HTTP_LISTEN must be 0.0.0.0:8080")
        check(env.get("SHOAL_CLUSTER_BIND") == "0.0.0.0:7946", f"{name}: SHOAL_CLUSTER_BIND must be 0.0.0.0:7946")
        # Resource ports are reached from nginx, so they must not stay on the default loopback;
        # the environment override replaces the config file the nodes used to mount for this.
        check(env.get("SHOAL_PROXY_ADDRESS") == "0.0.0.0", f"{name}: SHOAL_PROXY_ADDRESS must be 0.0.0.0")
        check("SHOAL_CONFIG" not in env and not svc.get("configs"),
              f"{name}: every node setting comes from the environment; no config file is mounted")
        # cluster.advertise only takes IP:PORT, so it must match the node's fixed address.
        ip = svc["networks"]["shoal"]["ipv4_address"]
        check(env.get("SHOAL_CLUSTER_ADVERTISE") == f"{ip}:7946", f"{name}: advertise must be its fixed IP {ip}:7946")
        check(ipaddress.ip_address(ip) in network, f"{name}: {ip} outside the compose network {network}")
        advertised.add(ip)
        for var, secret in (("SHOAL_DATABASE_URL_FILE", "database-url"), ("SHOAL_CLUSTER_PSK_FILE", "cluster-psk"),
                            ("SHOAL_SECRETS_KEY_FILE", "secrets-key")):
            check(env.get(var) == f"/run/secrets/{secret}" and secret in svc.get("secrets", []),
                  f"{name}: {var} must point at the mounted {secret} secret")
        check(not any(k in env for k in ("SHOAL_DATABASE_URL", "SHOAL_CLUSTER_PSK", "SHOAL_SECRETS_KEY")),
              f"{name}: secrets must come from files, not environment values")
        check("/ready" in " ".join(svc["healthcheck"]["test"]), f"{name}: healthcheck must use /ready")
        check(svc["depends_on"]["postgres"]["condition"] == "service_healthy", f"{name}: must wait for PostgreSQL")
        check(svc.get("read_only") is True and svc.get("cap_drop") == ["ALL"], f"{name}: read-only, no capabilities")
    check(len(advertised) == len(NODES), "the nodes' advertised addresses must differ")

    nginx = services["nginx"]
    for name in NODES:
        check(nginx["depends_on"].get(name, {}).get("condition") == "service_healthy",
              f"nginx must wait for {name} to be healthy (ready)")
    conf = (root / "deploy/compose/nginx.conf").read_text()
    for name in NODES:
        check(re.search(rf"server {name}:8080 [^;]*max_fails=\d+", conf) is not None,
              f"nginx.conf: {name}:8080 must be an upstream with max_fails")
    check("./deploy/compose/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx.get("volumes", []),
          "nginx must mount deploy/compose/nginx.conf read-only")
    check_admin_apart(services, conf)

    boot = services["admin-bootstrap"]
    check(boot["command"] == ["admin", "create", "--username", "admin", "--generate"], "admin bootstrap command")
    check(boot.get("restart") == "no", "admin bootstrap must be a one-shot")

    for name in ("database-url", "cluster-psk", "secrets-key", "postgres-password"):
        check(secrets.get(name, {}).get("file") == f"./deploy/compose/secrets/{name}", f"secret {name} must be a file in deploy/compose/secrets/")
    gitignore = (root / ".gitignore").read_text().splitlines()
    check("/deploy/compose/secrets/" in gitignore, ".gitignore must exclude deploy/compose/secrets/")
    check(not spec.get("configs"), "top-level configs: podman-compose ignores them; bind-mount the file")
    regions_secrets = check_regions(root)
    check_make_secrets(root, {**secrets, **regions_secrets})
    return report()


# deploy/compose/regions.yml: the nodes of each region, and the global cluster they all join.
REGIONS = {"eu-west": ["shoal-eu-1", "shoal-eu-2", "shoal-eu-3"], "us-east": ["shoal-us-1", "shoal-us-2", "shoal-us-3"]}
GLOBAL = "global"
PORTS = {"regional": 7946, GLOBAL: 7947}
REGIONS_FILE = "deploy/compose/regions.yml"


def check_regions(root: Path) -> dict:
    """deploy/compose/regions.yml and its config files; returns its secrets."""
    def fail(ok: bool, message: str) -> None:
        if not ok:
            failures.append(f"{REGIONS_FILE}: {message}")
    spec = yaml.safe_load((root / REGIONS_FILE).read_text())
    try:
        PyCompose.from_json(json.dumps(spec))
    except ValueError as e:
        fail(False, f"does not follow the Compose specification: {e}")
    services, secrets, networks = spec.get("services", {}), spec.get("secrets", {}), spec.get("networks", {})
    nodes = [n for region in REGIONS.values() for n in region]
    for name in ["postgres", "admin-bootstrap", *nodes]:
        fail(name in services, f"service {name} missing")
    fail(sorted(networks) == sorted([*REGIONS, GLOBAL]), f"networks must be one per cluster: {sorted([*REGIONS, GLOBAL])}")
    for name, s in secrets.items():
        fail(s.get("file") == f"./secrets/{name}", f"secret {name} must be a file in deploy/compose/secrets/")
    if any(f.startswith(REGIONS_FILE) for f in failures):
        return secrets
    subnet = {n: ipaddress.ip_network(networks[n]["ipam"]["config"][0]["subnet"]) for n in networks}
    address = {n: {net: s["ipv4_address"] for net, s in services[n]["networks"].items()} for n in nodes}
    global_peers = [f"{address[n][GLOBAL]}:{PORTS[GLOBAL]}" for n in nodes]
    loaded = 0
    for region, members in REGIONS.items():
        source = f"./regions/{region}.toml"
        config = tomllib.loads((root / "deploy/compose" / source).read_text())
        clusters = config.get("clusters", [])
        fail([c.get("name") for c in clusters] == [region, GLOBAL], f"{source}: [[clusters]] must be {region} then {GLOBAL}")
        want = {key: region if key in ("counters", "cache") else GLOBAL for key in SERVICES}
        fail(config.get("services") == want, f"{source}: [services] must be {want} (counters regional, events and global counts global)")
        if len(clusters) != 2:
            continue
        keys = set()
        for c, network, port, peers in (
            (clusters[0], region, PORTS["regional"], [f"{address[n][region]}:{PORTS['regional']}" for n in members]),
            (clusters[1], GLOBAL, PORTS[GLOBAL], global_peers),
        ):
            d = c.get("discovery", {})
            fail(c.get("bind") == f"0.0.0.0:{port}", f"{source}: cluster {c.get('name')} must bind port {port}")
            fail(d.get("method") == "static" and d.get("peers") == peers,
                 f"{source}: cluster {c.get('name')} must list its nodes {peers} (static)")
            fail(d.get("allowed_address_space") == [str(subnet[network])],
                 f"{source}: cluster {c.get('name')} must join only addresses of its network {subnet[network]}")
            keys.add(c.get("psk_file", "").removeprefix("/run/secrets/"))
        fail(keys == {f"{region}-cluster-psk", f"{GLOBAL}-cluster-psk"}, f"{source}: a key file per cluster, got {sorted(keys)}")
        for node in members:
            svc, env = services[node], services[node].get("environment", {})
            never, planned = unknown(root, env, clusters=[region, GLOBAL])
            fail(not never and not planned, f"{node}: SHOAL_* variables the node does not read: {never + planned}")
            single = sorted(k for k in env if re.fullmatch(r"SHOAL_CLUSTER_(NAME|BIND|ADVERTISE|PSK|PSK_FILE)|SHOAL_DISCOVERY_\w+", k))
            fail(not single, f"{node}: the node refuses single-cluster variables beside [[clusters]]: {single}")
            fail(env.get("SHOAL_CONFIG") == "/etc/shoal/shoal.toml" and f"{source}:/etc/shoal/shoal.toml:ro" in svc.get("volumes", []),
                 f"{node}: must mount {source} read-only as SHOAL_CONFIG")
            fail(sorted(address[node]) == sorted([region, GLOBAL]), f"{node}: must be on the networks {region} and {GLOBAL} only")
            for cluster, network, port in ((region, region, PORTS["regional"]), (GLOBAL, GLOBAL, PORTS[GLOBAL])):
                var = cluster_env(cluster, "BIND")
                fail(env.get(var) == f"{address[node][network]}:{port}",
                     f"{node}: {var} must be its address on the {network} network, port {port}")
                fail(ipaddress.ip_address(address[node][network]) in subnet[network], f"{node}: address outside {network}")
                for proto in ("tcp", "udp"):
                    fail(f"{port}/{proto}" in svc.get("expose", []), f"{node}: must expose {port}/{proto}")
            fail(sorted(svc.get("secrets", [])) == sorted(["database-url", "secrets-key", *keys]),
                 f"{node}: must mount exactly the database URL, the secrets key and its clusters' keys")
            fail(not any(k in env for k in ("SHOAL_DATABASE_URL", "SHOAL_SECRETS_KEY", cluster_env(region, "PSK"),
                                             cluster_env(GLOBAL, "PSK"))), f"{node}: secrets must come from files")
            fail(svc.get("read_only") is True and svc.get("cap_drop") == ["ALL"], f"{node}: read-only, no capabilities")
            fail("/ready" in " ".join(svc["healthcheck"]["test"]), f"{node}: healthcheck must use /ready")
            fail(svc["depends_on"]["postgres"]["condition"] == "service_healthy", f"{node}: must wait for PostgreSQL")
            for host, port in (published(p) for p in svc.get("ports", [])):
                fail(port == ADMIN_PORT and host in ("127.0.0.1", "[::1]", "::1"),
                     f"{node}: only the admin port, on loopback, may be published")
            files = {f"/run/secrets/{k}": random_keys.token_hex(32) for k in svc.get("secrets", [])}
            files["/run/secrets/database-url"] = "postgres://shoal@postgres:5432/shoal"
            files["/etc/shoal/shoal.toml"] = (root / "deploy/compose" / source).read_text()
            error = check_config(files, {k: str(v) for k, v in env.items()})
            fail(error is None, f"{node}: the node refuses its configuration: {error}")
            loaded += 1
    boot = services["admin-bootstrap"]
    fail(boot.get("command") == ["admin", "create", "--username", "admin", "--generate"] and boot.get("restart") == "no",
         "admin-bootstrap must be the one-shot admin create")
    if not any(f.startswith(REGIONS_FILE) for f in failures):
        print(f"compose: {REGIONS_FILE} follows the Compose spec; two regions and a global cluster checked "
              f"(a network, port and key per cluster); the node's loader accepts all {loaded} nodes' configurations")
    return secrets


ADMIN_PORT = 8080


def nginx_block(conf: str, name: str) -> str:
    """The body of the top-level `name { ... }` block of nginx.conf, comments removed."""
    text = re.sub(r"#[^\n]*", "", conf)
    match = re.search(rf"(?m)^{name}\s*\{{", text)
    if not match:
        return ""
    depth, start = 1, match.end()
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return ""


def published(port) -> tuple[str, int]:
    """(host address, container port) of a compose `ports` entry, short or long syntax."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), int(port["target"])
    parts = str(port).rsplit(":", 2)
    host = parts[0] if len(parts) == 3 else ""
    return host, int(parts[-1].split("/")[0])


def check_admin_apart(services: dict, conf: str) -> None:
    """The admin surface (the nodes' 8080: console, admin API, /ready, /metrics,
    /cluster/status) and the data plane on separate nginx listeners: the admin one published
    on loopback only, and no data-plane (stream) server able to reach a node's 8080, so that
    publishing the data plane never publishes the console (issue 18; the Helm chart's admin
    Service and the ECS module's admin ALB follow the same rule)."""
    for name in NODES:
        check(not services[name].get("ports"), f"{name}: a node publishes no port; nginx is the only way in")
    http, stream = nginx_block(conf, "http"), nginx_block(conf, "stream")
    check(bool(http) and bool(stream), "nginx.conf: expected an http block (admin) and a stream block (data plane)")
    http_listens = {int(p) for p in re.findall(r"\blisten\s+(?:[\d.]+:)?(\d+)", http)}
    check(http_listens == {ADMIN_PORT}, f"nginx.conf: the http block must listen on {ADMIN_PORT} only, got {sorted(http_listens)}")
    http_upstreams = {int(p) for p in re.findall(r"\bserver\s+[\w.-]+:(\d+)", http)}
    check(http_upstreams == {ADMIN_PORT}, f"nginx.conf: the http block must reach the nodes' {ADMIN_PORT} only, got {sorted(http_upstreams)}")
    stream_listens = {int(p) for p in re.findall(r"\blisten\s+(?:[\d.]+:)?(\d+)", stream)}
    stream_upstreams = {int(p) for p in re.findall(r"\bserver\s+[\w.-]+:(\d+)", stream)}
    check(bool(stream_listens) and ADMIN_PORT not in stream_listens,
          f"nginx.conf: data-plane (stream) servers must not listen on {ADMIN_PORT}, got {sorted(stream_listens)}")
    check(ADMIN_PORT not in stream_upstreams,
          f"nginx.conf: no data-plane (stream) upstream may name a node's {ADMIN_PORT} (console, admin API)")
    # A stream server passes to a named upstream only, never straight to host:port.
    for target in re.findall(r"\bproxy_pass\s+([^;\s]+)\s*;", stream):
        check(re.fullmatch(r"[A-Za-z_][\w]*", target) is not None,
              f"nginx.conf: stream proxy_pass {target} must name an upstream block")
    ports = [published(p) for p in services["nginx"].get("ports", [])]
    for host, port in ports:
        if port == ADMIN_PORT:
            check(host in ("127.0.0.1", "[::1]", "::1"),
                  f"nginx: the admin port {ADMIN_PORT} must be published on loopback only, got {host or 'every address'}")
        else:
            check(port in stream_listens, f"nginx: published port {port} must be a data-plane (stream) listener")
    check(ADMIN_PORT in {p for _, p in ports}, f"nginx: the admin port {ADMIN_PORT} must be published (on loopback)")


def check_make_secrets(root: Path, secrets: dict) -> None:
    """Runs a copy of make-secrets in a scratch directory and checks what it writes."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "make-secrets"
        shutil.copy2(root / "deploy/compose/make-secrets", script)
        run = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            check(False, f"make-secrets failed: {run.stderr.strip()}")
            return
        made = {p.name: p.read_text().strip() for p in (Path(tmp) / "secrets").iterdir()}
    check(sorted(made) == sorted(secrets), f"make-secrets writes {sorted(made)}, compose mounts {sorted(secrets)}")
    for name in ("cluster-psk", "secrets-key", "postgres-password", "s3-root-password", "eu-west-cluster-psk",
                 "us-east-cluster-psk", "global-cluster-psk"):
        check(re.fullmatch(r"[0-9a-f]{64}", made.get(name, "")) is not None, f"make-secrets: {name} must be 32 random bytes as hex")
    # The MinIO root user doubles as an S3 resource's upstream access key id: Shoal takes only
    # 16-128 letters and digits there.
    check(re.fullmatch(r"[A-Za-z0-9]{16,128}", made.get("s3-root-user", "")) is not None,
          "make-secrets: s3-root-user must be 16-128 letters and digits (an S3 upstream access key id)")
    check(made.get("database-url") == f"postgres://shoal:{made.get('postgres-password')}@postgres:5432/shoal",
          "make-secrets: database-url must carry the PostgreSQL password")


def report() -> int:
    for f in failures:
        print(f"compose: FAIL {f}", file=sys.stderr)
    if not failures:
        print("compose: docker-compose.yml follows the Compose spec; services, secrets and nginx checked "
              "(admin port on loopback only, no data-plane server reaching it)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
