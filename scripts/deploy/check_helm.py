#!/usr/bin/env python3
"""Static checks of the Helm chart with the Helm SDK (helm-python-sdk; no helm binary, no cluster).

    check_helm.py CHART_DIR OUT_DIR

Lints the chart strictly, renders it for the default values and every `ci/*.yaml`, writes each
rendering to OUT_DIR/<case>/ (for kubernetes-validate and checkov), checks that every
`ci/bad/*.yaml` is refused with the message its `# expect:` line names, and asserts the facts
the deployment depends on (RBAC, gossip ports, probes, grace periods, discovery env; with
globalCluster.enabled the ConfigMap's [[clusters]] entries, the second port on the container,
headless Service and NetworkPolicy, and no single-cluster variable). Every rendering's
environment, keys and config file are loaded by the node's own loader (`shoal check-config`).
`ci/maximal.yaml` is also rendered with every other discovery method of the schema.
Run by scripts/check-deploy inside .venv-deploy.
"""

from __future__ import annotations

import base64
import json
import re
import secrets as random_keys
import sys
import tomllib
from pathlib import Path

import helm_python
import yaml
from node_constants import SERVICES, check_config, cluster_env, unknown
from node_constants import DISCOVERY_METHODS as NODE_METHODS
from node_constants import KUBERNETES_POD_VERBS as POD_VERBS

RELEASE = "ci"
NAMESPACE = "shoal-ci"
# The only input the chart cannot default: rendering with nothing else is the "default values" case.
REQUIRED = {"secrets": {"databaseUrl": "postgres://shoal@postgres.shoal-ci.svc:5432/shoal"}}
# Variables that select or configure one discovery method; the chart sets only its method's own
# (the node refuses settings of another method: "is not used by discovery method").
METHOD_ENV = {
    "kubernetes": {"SHOAL_DISCOVERY_METHOD", "SHOAL_DISCOVERY_KUBERNETES_NAMESPACE",
                   "SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR"},
    "dns-srv": {"SHOAL_DISCOVERY_METHOD", "SHOAL_DISCOVERY_DNS_SRV"},
}
# Settings of the node's cluster membership that discovery does not own.
SHARED_DISCOVERY_ENV = {"SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE"}

failures: list[str] = []
env_names: set[str] = set()
# The [[clusters]] names the renderings configure, for the per-cluster variables they set.
cluster_names: set[str] = set()
# Renderings the node's own loader accepted (shoal check-config).
loaded: list[str] = []
# Where the chart mounts its Secret and, with globalCluster.enabled, its ConfigMap.
SECRETS_DIR = "/run/secrets/shoal"
CONFIG_FILE = "/etc/shoal/shoal.toml"
# What the downward API would give the pod, for loading its environment.
POD_FIELDS = {"status.podIP": "10.1.0.5", "metadata.name": f"{RELEASE}-shoal-0", "metadata.namespace": NAMESPACE}


def check(ok: bool, message: str) -> None:
    if not ok:
        failures.append(message)


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render(chart: helm_python.Chart, values: dict) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def check_case(case: str, values: dict, docs: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    merged = values
    kind = merged["workload"]["kind"]
    workloads = by_kind.get(kind, [])
    check(len(workloads) == 1, f"{case}: expected one {kind}, got {len(workloads)}")
    if not workloads:
        return
    pod = workloads[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(container)
    env_names.update(env)
    s = merged["shoal"]

    # Probes: liveness on /health, readiness on /ready.
    check(container["livenessProbe"]["httpGet"]["path"] == "/health", f"{case}: liveness probe must hit /health")
    check(container["readinessProbe"]["httpGet"]["path"] == "/ready", f"{case}: readiness probe must hit /ready")

    # The kubelet's SIGKILL must come after preStop + the node's drain deadline.
    grace = pod["terminationGracePeriodSeconds"]
    check(grace > s["shutdownGrace"] + s["preStopSleep"],
          f"{case}: terminationGracePeriodSeconds {grace} is not above shutdownGrace + preStopSleep")
    if s.get("terminationGracePeriodSeconds") is None:
        check(grace == s["shutdownGrace"] + s["preStopSleep"] + 10, f"{case}: default grace must be grace + preStop + 10")
    check(env["SHOAL_HTTP_SHUTDOWN_GRACE"]["value"] == f"{s['shutdownGrace']}s", f"{case}: SHOAL_HTTP_SHUTDOWN_GRACE mismatch")
    check(container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(s["preStopSleep"])], f"{case}: preStop sleep mismatch")

    # Security context.
    sc = container["securityContext"]
    check(sc.get("readOnlyRootFilesystem") is True, f"{case}: root filesystem must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, f"{case}: privilege escalation must be off")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{case}: capabilities must drop ALL")
    check(pod["securityContext"].get("runAsNonRoot") is True, f"{case}: pod must run as non-root")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    check("/var/lib/shoal" in mounts, f"{case}: /var/lib/shoal must be a volume (read-only root)")
    check(mounts.get("/run/secrets/shoal", {}).get("readOnly") is True, f"{case}: secrets must be mounted read-only")
    check(all(not m.get("subPath") for m in container["volumeMounts"]),
          f"{case}: no subPath mounts (they never see rotated secrets)")

    # Gossip: TCP and UDP on the container and on the headless Service, which publishes
    # not-ready pods and names its TCP port "gossip" (the SRV record name).
    gossip = merged["ports"]["gossip"]
    cports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    check({(gossip, "TCP"), (gossip, "UDP")} <= cports, f"{case}: container must expose gossip TCP and UDP")
    # Kubernetes discovery takes a peer's gossip port from its container port named exactly
    # "gossip" (else discovery.port): it must be the TCP gossip port, and the only one so named.
    named = [p for c in pod["containers"] for p in c.get("ports", []) if p.get("name") == "gossip"]
    check([(p["containerPort"], p.get("protocol", "TCP")) for p in named] == [(gossip, "TCP")],
          f"{case}: the container must declare one port named gossip, TCP {gossip}; got {named}")
    names = [p.get("name") for p in container["ports"]]
    check(len(names) == len(set(names)), f"{case}: container port names must be unique, got {names}")
    headless = [d for d in by_kind.get("Service", []) if d["spec"].get("clusterIP") == "None"]
    check(len(headless) == 1, f"{case}: expected one headless Service")
    if headless:
        hs = headless[0]["spec"]
        check(hs.get("publishNotReadyAddresses") is True, f"{case}: headless Service must publish not-ready addresses")
        ports = {(p["name"], p["port"], p["protocol"]) for p in hs["ports"]}
        check(("gossip", gossip, "TCP") in ports and any(p[1] == gossip and p[2] == "UDP" for p in ports),
              f"{case}: headless Service must publish gossip TCP (named gossip) and UDP")
        if kind == "StatefulSet":
            check(workloads[0]["spec"]["serviceName"] == headless[0]["metadata"]["name"],
                  f"{case}: StatefulSet serviceName must be the headless Service")

    # Discovery: with one cluster the method's own variables and nothing of another method; with
    # the global cluster, the ConfigMap's [[clusters]] entries and no single-cluster variable.
    method = merged["discovery"]["method"]
    check(method in NODE_METHODS, f"{case}: discovery.method {method!r} is not one the node accepts {sorted(NODE_METHODS)}")
    global_on = merged["globalCluster"]["enabled"]
    if global_on:
        check_two_clusters(case, merged, by_kind, workloads[0], container, env, headless)
    else:
        check(env.get("SHOAL_DISCOVERY_METHOD", {}).get("value") == method, f"{case}: SHOAL_DISCOVERY_METHOD must be {method}")
        discovery_env = {n for n in env if n.startswith("SHOAL_DISCOVERY_")} - SHARED_DISCOVERY_ENV
        check(discovery_env == METHOD_ENV.get(method),
              f"{case}: discovery variables for {method} must be {sorted(METHOD_ENV.get(method, ()))}, got {sorted(discovery_env)}")
    sa_name = pod.get("serviceAccountName", "default")
    roles = by_kind.get("Role", [])
    bindings = by_kind.get("RoleBinding", [])
    check(not by_kind.get("ClusterRole") and not by_kind.get("ClusterRoleBinding"), f"{case}: no cluster-wide RBAC")
    for sa in by_kind.get("ServiceAccount", []):
        # Pods opt in to a token in their own spec; the account mounts none by default.
        check(sa.get("automountServiceAccountToken") is False, f"{case}: ServiceAccount must not automount its token")
    if method == "kubernetes":
        check(workloads[0]["metadata"].get("namespace") == NAMESPACE, f"{case}: workload must be in the release namespace")
        match_labels = workloads[0]["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in match_labels.items())
        if not global_on:
            ns_env = env.get("SHOAL_DISCOVERY_KUBERNETES_NAMESPACE", {})
            check(ns_env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
                  f"{case}: SHOAL_DISCOVERY_KUBERNETES_NAMESPACE must be the pod's (release) namespace from the downward API")
            check(bool(match_labels) and env.get("SHOAL_DISCOVERY_KUBERNETES_LABEL_SELECTOR", {}).get("value") == selector,
                  f"{case}: label selector env must equal the workload selector ({selector})")
        template_labels = workloads[0]["spec"]["template"]["metadata"]["labels"]
        check(match_labels.items() <= template_labels.items(), f"{case}: the label selector must select the pods")
        check(pod.get("automountServiceAccountToken") is True, f"{case}: kubernetes discovery needs the token mounted")
        if merged["rbac"]["create"]:
            check(len(roles) == 1, f"{case}: expected one Role, got {len(roles)}")
            for role in roles:
                check(role["metadata"].get("namespace") == NAMESPACE, f"{case}: Role must be in the release namespace")
                rules = role.get("rules", [])
                check(len(rules) == 1, f"{case}: Role must have one rule (pods), got {rules}")
                for rule in rules:
                    check(rule.get("apiGroups") == [""] and rule.get("resources") == ["pods"]
                          and not rule.get("resourceNames") and not rule.get("nonResourceURLs"),
                          f"{case}: Role rule must cover pods in the core API group only, got {rule}")
                    verbs = rule.get("verbs", [])
                    check(len(verbs) == len(set(verbs)) and sorted(verbs) == sorted(POD_VERBS),
                          f"{case}: Role must grant exactly KUBERNETES_POD_VERBS {POD_VERBS} on pods, got {verbs}")
            check(len(bindings) == 1, f"{case}: expected one RoleBinding, got {len(bindings)}")
            for b in bindings:
                check(b["metadata"].get("namespace") == NAMESPACE, f"{case}: RoleBinding must be in the release namespace")
                check(bool(roles) and b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                       "name": roles[0]["metadata"]["name"]},
                      f"{case}: RoleBinding must reference the Role, got {b['roleRef']}")
                check(b.get("subjects") == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}],
                      f"{case}: RoleBinding must bind only the pods' ServiceAccount {sa_name}, got {b.get('subjects')}")
            check(sa_name != "default", f"{case}: the Role must not go to the namespace's default ServiceAccount")
        else:
            check(not roles and not bindings, f"{case}: no Role or RoleBinding with rbac.create false")
    else:
        want = f"_gossip._tcp.{headless[0]['metadata']['name']}.{NAMESPACE}.svc.{merged['clusterDomain']}" if headless else "?"
        if not global_on:
            srv = env["SHOAL_DISCOVERY_DNS_SRV"]["value"]
            check(srv == want, f"{case}: SRV name {srv!r}, want {want!r}")
        check(pod.get("automountServiceAccountToken") is False, f"{case}: no API token without kubernetes discovery")
        check(not roles and not bindings, f"{case}: no Role or RoleBinding without kubernetes discovery")

    # Data-plane ports must be reachable through the Service: SHOAL_PROXY_ADDRESS replaces the
    # config file (ConfigMap) the chart used to mount for this; only a second cluster needs a file.
    check(env.get("SHOAL_PROXY_ADDRESS", {}).get("value") == "0.0.0.0", f"{case}: SHOAL_PROXY_ADDRESS must be 0.0.0.0")
    if not global_on:
        check("SHOAL_CONFIG" not in env and not by_kind.get("ConfigMap"), f"{case}: no config file or ConfigMap expected")
        # Advertised address: the pod IP (cluster.advertise refuses host names).
        check(env["SHOAL_CLUSTER_ADVERTISE"]["value"] == f"$(POD_IP):{gossip}", f"{case}: advertise must be $(POD_IP):{gossip}")
        check(list(env).index("POD_IP") < list(env).index("SHOAL_CLUSTER_ADVERTISE"), f"{case}: POD_IP must precede its use")
    annotations = workloads[0]["spec"]["template"]["metadata"]["annotations"]
    check("checksum/secret" in annotations, f"{case}: checksum/secret annotation missing")

    # NetworkPolicy: gossip TCP+UDP only from this release's pods.
    if merged["networkPolicy"]["enabled"]:
        policies = by_kind.get("NetworkPolicy", [])
        check(len(policies) == 1, f"{case}: expected one NetworkPolicy")
        if policies:
            selector = workloads[0]["spec"]["selector"]["matchLabels"]
            gossip_rules = [r for r in policies[0]["spec"]["ingress"] if any(p["port"] == gossip for p in r["ports"])]
            check(len(gossip_rules) == 1, f"{case}: one ingress rule for gossip")
            for rule in gossip_rules:
                check(sorted(p["protocol"] for p in rule["ports"]) == ["TCP", "UDP"], f"{case}: gossip rule must be TCP+UDP only")
                check(rule.get("from") == [{"podSelector": {"matchLabels": selector}}],
                      f"{case}: gossip must be allowed only from the release's pods")
            if global_on:
                # The global port: this release's pods and the other regions' (globalCluster.from).
                port = merged["globalCluster"]["port"]
                rules = [r for r in policies[0]["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
                check(len(rules) == 1, f"{case}: one ingress rule for the global port {port}")
                for rule in rules:
                    check(sorted((p["port"], p["protocol"]) for p in rule["ports"]) == [(port, "TCP"), (port, "UDP")],
                          f"{case}: the global rule must be {port} TCP+UDP only")
                    check(rule.get("from") == [{"podSelector": {"matchLabels": selector}}, *merged["globalCluster"]["from"]],
                          f"{case}: the global port must be allowed from the release's pods and globalCluster.from only")

    # The HTTP port (console, admin API) only on the admin Service, whose type is chosen on its
    # own: exposing the data plane must never publish it.
    services = [d for d in by_kind.get("Service", []) if d["spec"].get("clusterIP") != "None"]
    http_on = [d["metadata"]["name"] for d in services
               if any(p.get("targetPort") == "http" for p in d["spec"]["ports"])]
    check(len(http_on) == 1 and http_on[0].endswith("-admin"),
          f"{case}: the HTTP port must be on the admin Service only, got {http_on}")
    for d in services:
        if d["metadata"]["name"].endswith("-admin"):
            check(d["spec"]["type"] == merged["adminService"]["type"], f"{case}: admin Service type")
        else:
            check(d["spec"]["type"] == merged["service"]["type"], f"{case}: data-plane Service type")
            check(bool(merged["ports"]["dataPlane"]), f"{case}: a data-plane Service without data-plane ports")

    # ServiceMonitor: no bundled CRD schema, so its shape is checked here instead of by
    # kubernetes-validate: it must select the HTTP Service and name a port that Service has.
    for sm in by_kind.get("ServiceMonitor", []):
        want = sm["spec"]["selector"]["matchLabels"]
        matching = [d for d in by_kind.get("Service", []) if want.items() <= d["metadata"]["labels"].items()]
        check(len(matching) == 1, f"{case}: ServiceMonitor must select exactly one Service, got {len(matching)}")
        for endpoint in sm["spec"]["endpoints"]:
            names = {p["name"] for m in matching for p in m["spec"]["ports"]}
            check(endpoint["port"] in names, f"{case}: ServiceMonitor port {endpoint['port']} not on the Service")
            check(endpoint["path"].startswith("/"), f"{case}: ServiceMonitor path must be absolute")
        check(sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE], f"{case}: ServiceMonitor namespace")

    if merged["secrets"]["existingSecret"]:
        check(not by_kind.get("Secret"), f"{case}: no Secret when existingSecret is set")
    else:
        secret = by_kind.get("Secret", [{}])[0]
        want = {"cluster-psk", "secrets-key", "database-url"} | ({"global-cluster-psk"} if global_on else set())
        check(set(secret.get("data", {})) == want, f"{case}: Secret keys must be {sorted(want)}")
    load_rendering(case, merged, by_kind, env)


def check_two_clusters(case: str, merged: dict, by_kind: dict, workload: dict, container: dict, env: dict,
                       headless: list[dict]) -> None:
    """globalCluster.enabled: the regional and the global cluster as two [[clusters]] entries in
    the ConfigMap the pods mount, each with its own port, key file and discovery, [services]
    naming them, and in the environment only what differs per pod (the advertised addresses),
    since the node refuses SHOAL_CLUSTER_* and SHOAL_DISCOVERY_* beside [[clusters]]."""
    g, gossip = merged["globalCluster"], merged["ports"]["gossip"]
    regional_name, global_name = merged["shoal"]["clusterName"], g["name"]
    maps = by_kind.get("ConfigMap", [])
    check(len(maps) == 1 and set(maps[0].get("data", {})) == {"shoal.toml"}, f"{case}: expected one ConfigMap with shoal.toml")
    if len(maps) != 1:
        return
    try:
        config = tomllib.loads(maps[0]["data"].get("shoal.toml", ""))
    except tomllib.TOMLDecodeError as e:
        failures.append(f"{case}: shoal.toml is not TOML: {e}")
        return
    check(env.get("SHOAL_CONFIG", {}).get("value") == CONFIG_FILE, f"{case}: SHOAL_CONFIG must be {CONFIG_FILE}")
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts.get(str(Path(CONFIG_FILE).parent), {})
    check(mount.get("readOnly") is True and volumes.get(mount.get("name"), {}).get("configMap", {}).get("name")
          == maps[0]["metadata"]["name"], f"{case}: the ConfigMap must be mounted read-only at {Path(CONFIG_FILE).parent}")
    check("checksum/config" in workload["spec"]["template"]["metadata"]["annotations"],
          f"{case}: checksum/config annotation missing (a config change must roll the pods)")
    single = sorted(n for n in env if n in {"SHOAL_CLUSTER_NAME", "SHOAL_CLUSTER_BIND", "SHOAL_CLUSTER_ADVERTISE",
                                             "SHOAL_CLUSTER_PSK_FILE", "SHOAL_CLUSTER_PSK"} or n.startswith("SHOAL_DISCOVERY_"))
    check(not single, f"{case}: the node refuses single-cluster variables beside [[clusters]], got {single}")
    check(set(config) == {"clusters", "services"}, f"{case}: shoal.toml must hold [[clusters]] and [services] only, got {sorted(config)}")
    clusters = config.get("clusters", [])
    check([c.get("name") for c in clusters] == [regional_name, global_name],
          f"{case}: [[clusters]] must be {regional_name!r} then {global_name!r}, got {[c.get('name') for c in clusters]}")
    if len(clusters) != 2:
        return
    cluster_names.update(c["name"] for c in clusters)
    regional, worldwide = clusters
    secret_keys = set()
    for c, port in ((regional, gossip), (worldwide, g["port"])):
        name = c["name"]
        check(c.get("bind") == f"0.0.0.0:{port}", f"{case}: cluster {name} must bind 0.0.0.0:{port}, got {c.get('bind')}")
        var = cluster_env(name, "ADVERTISE")
        check(env.get(var, {}).get("value") == f"$(POD_IP):{port}", f"{case}: {var} must be $(POD_IP):{port}")
        check(var in env and list(env).index("POD_IP") < list(env).index(var), f"{case}: POD_IP must precede {var}")
        psk = c.get("psk_file", "")
        check(psk.startswith(f"{SECRETS_DIR}/"), f"{case}: cluster {name}'s psk_file must be in the mounted Secret, got {psk!r}")
        secret_keys.add(psk.removeprefix(f"{SECRETS_DIR}/"))
        check("advertise" not in c, f"{case}: cluster {name}'s advertised address is the pod's, from the environment")
    check(secret_keys == {"cluster-psk", "global-cluster-psk"}, f"{case}: each cluster needs its own key file, got {sorted(secret_keys)}")
    check(regional_name != global_name and gossip != g["port"], f"{case}: the clusters must differ in name and port")
    check(worldwide.get("probe_interval") == g["probeInterval"] and worldwide.get("probe_timeout") == g["probeTimeout"],
          f"{case}: the global cluster's probe timing must come from globalCluster.probeInterval/probeTimeout")

    # The regional cluster: the chart's discovery.method, as the single cluster would have it.
    d = regional.get("discovery", {})
    method = merged["discovery"]["method"]
    check(d.get("method") == method, f"{case}: the regional cluster's discovery must be {method}, got {d.get('method')}")
    check(d.get("allowed_address_space") == merged["discovery"]["allowedAddressSpace"],
          f"{case}: the regional allowed_address_space must be discovery.allowedAddressSpace")
    if method == "kubernetes":
        match_labels = workload["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in match_labels.items())
        check(d.get("kubernetes") == {"namespace": NAMESPACE, "label_selector": selector},
              f"{case}: the regional kubernetes discovery must watch {selector} in {NAMESPACE}, got {d.get('kubernetes')}")
    elif headless:
        want = f"_gossip._tcp.{headless[0]['metadata']['name']}.{NAMESPACE}.svc.{merged['clusterDomain']}"
        check(d.get("name") == want, f"{case}: the regional SRV name must be {want!r}, got {d.get('name')!r}")

    # The global cluster: other regions through static peers (with this release's own pods
    # through the headless Service) or an SRV name, on its own port.
    d = worldwide.get("discovery", {})
    gd = g["discovery"]
    check(d.get("method") == gd["method"], f"{case}: the global cluster's discovery must be {gd['method']}")
    check(d.get("allowed_address_space") == gd["allowedAddressSpace"],
          f"{case}: the global allowed_address_space must be globalCluster.discovery.allowedAddressSpace")
    if gd["method"] == "static" and headless:
        own = f"{headless[0]['metadata']['name']}.{NAMESPACE}.svc.{merged['clusterDomain']}:{g['port']}"
        check(d.get("peers") == [own, *gd["peers"]], f"{case}: global peers must be {own} then globalCluster.discovery.peers")
    elif gd["method"] == "dns-srv":
        check(d.get("name") == gd["srvName"], f"{case}: the global SRV name must be globalCluster.discovery.srvName")

    # Ports: the global one on the container and the headless Service, TCP and UDP.
    cports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    check({(g["port"], "TCP"), (g["port"], "UDP")} <= cports, f"{case}: container must expose the global port TCP and UDP")
    if headless:
        hports = {(p["port"], p["protocol"]) for p in headless[0]["spec"]["ports"]}
        check({(g["port"], "TCP"), (g["port"], "UDP")} <= hports, f"{case}: headless Service must publish the global port TCP and UDP")

    # [services]: every service named, each on one of the two clusters, as values.yaml maps them.
    names = {"regional": regional_name, "global": global_name}
    want = {key: names[g["services"][key if key != "global_counters" else "globalCounters"]] for key in SERVICES}
    check(config.get("services") == want, f"{case}: [services] must be {want}, got {config.get('services')}")


def load_rendering(case: str, merged: dict, by_kind: dict, env: dict) -> None:
    """Loads the rendering with the node's own loader, with the pod's environment and files:
    the Secret's keys (sample keys for an existing Secret) and the ConfigMap's shoal.toml."""
    values = {}
    for name, e in env.items():
        if "value" in e:
            values[name] = re.sub(r"\$\(POD_IP\)", POD_FIELDS["status.podIP"], str(e["value"]))
        elif "fieldRef" in e.get("valueFrom", {}):
            values[name] = POD_FIELDS[e["valueFrom"]["fieldRef"]["fieldPath"]]
    files = {f"{SECRETS_DIR}/{k}": random_keys.token_hex(32) for k in ("cluster-psk", "secrets-key", "global-cluster-psk")}
    files[f"{SECRETS_DIR}/database-url"] = merged["secrets"]["databaseUrl"] or "postgres://shoal@db:5432/shoal"
    for secret in by_kind.get("Secret", []):
        files.update({f"{SECRETS_DIR}/{k}": base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    for cm in by_kind.get("ConfigMap", []):
        files[CONFIG_FILE] = cm["data"]["shoal.toml"]
    error = check_config(files, values)
    check(error is None, f"{case}: the node refuses the rendered configuration: {error}")
    loaded.append(case)


def check_schema_documented(schema: dict, path: str = "") -> None:
    """Every property carries a description, and every leaf a default (they feed the README)."""
    for name, prop in schema.get("properties", {}).items():
        where = f"{path}.{name}" if path else name
        if where == "global":
            continue
        check(bool(prop.get("description")), f"values.schema.json: {where} has no description")
        if prop.get("type") == "object" and "properties" in prop:
            check(prop.get("additionalProperties") is False, f"values.schema.json: {where} must refuse unknown keys")
            check_schema_documented(prop, where)
        else:
            check("default" in prop, f"values.schema.json: {where} has no default")


def leaf_keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and k not in ("resources",):
            keys.extend(leaf_keys(v, key))
        else:
            keys.append(key)
    return keys


def main() -> int:
    chart_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    root = chart_dir.resolve().parents[1]

    report = helm_python.lint(chart_dir, REQUIRED, strict=True, namespace=NAMESPACE)
    for m in report["messages"]:
        # Severity 1 is informational (e.g. "icon is recommended"); warnings and errors fail.
        if m["severity"] >= 2:
            failures.append(f"helm lint: {m['path']}: {m['error']}")
    failures.extend(f"helm lint: {e}" for e in report["errors"])

    chart = helm_python.Chart.load(chart_dir)
    defaults = chart.values
    schema = chart.schema or {}
    check(schema.get("additionalProperties") is False, "values.schema.json: top level must refuse unknown keys")
    check_schema_documented(schema)

    # Versions agree: the Cargo workspace, the chart's appVersion and the Dockerfile's default.
    cargo = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    check(chart.metadata["appVersion"] == cargo, f"Chart.yaml appVersion {chart.metadata['appVersion']} != Cargo {cargo}")
    docker_version = re.search(r"^ARG VERSION=(\S+)$", (root / "Dockerfile").read_text(), re.M)
    check(bool(docker_version) and docker_version.group(1) == cargo, f"Dockerfile ARG VERSION must default to {cargo}")

    # The README documents every values key.
    readme = (chart_dir / "README.md").read_text()
    for key in leaf_keys(defaults):
        check(f"`{key}`" in readme, f"README.md: values table misses `{key}`")

    methods = schema["properties"]["discovery"]["properties"]["method"]["enum"]
    check(set(methods) <= NODE_METHODS, f"values.schema.json: discovery.method {methods} beyond the node's {sorted(NODE_METHODS)}")
    check(defaults["discovery"]["method"] == "kubernetes", "values.yaml: discovery.method must default to kubernetes")
    cases = {"default": REQUIRED}
    for f in sorted((chart_dir / "ci").glob("*.yaml")):
        cases[f.stem] = yaml.safe_load(f.read_text()) or {}
    # The maximal values meet every discovery method, not only the one the file names.
    maximal = cases.get("maximal", {})
    for m in methods:
        if m != maximal.get("discovery", {}).get("method", defaults["discovery"]["method"]):
            cases[f"maximal-{m}"] = deep_merge(maximal, {"discovery": {"method": m}})
    check({deep_merge(defaults, v)["discovery"]["method"] for v in cases.values()} == set(methods),
          "ci: the renderings must cover every discovery.method")
    for case, values in cases.items():
        try:
            rendered = render(chart, values)
        except helm_python.HelmError as e:
            failures.append(f"{case}: render failed: {e}")
            continue
        case_dir = out_dir / case
        case_dir.mkdir(parents=True, exist_ok=True)
        for path, text in rendered.items():
            if path.endswith("NOTES.txt") or not text.strip():
                continue
            (case_dir / Path(path).name).write_text(text)
        check_case(case, deep_merge(defaults, values), documents(rendered))
        print(f"helm: rendered {case} ({len(list(case_dir.iterdir()))} manifests)")

    bad = sorted((chart_dir / "ci" / "bad").glob("*.yaml"))
    check(len(bad) >= 3, "ci/bad: expected several refused values files")
    for f in bad:
        text = f.read_text()
        expect = re.search(r"^# expect: (.+)$", text, re.M)
        if not expect:
            failures.append(f"ci/bad/{f.name}: no '# expect:' line")
            continue
        try:
            render(chart, yaml.safe_load(text) or {})
            failures.append(f"ci/bad/{f.name}: rendered, but must be refused")
        except helm_python.HelmError as e:
            message = str(e)
            if expect.group(1) not in message:
                failures.append(f"ci/bad/{f.name}: refused, but the message lacks {expect.group(1)!r}: {message}")
            else:
                print(f"helm: refused ci/bad/{f.name}: {message.splitlines()[-1].strip() or message.strip()}")

    # Rendering with no values at all must explain the one required input.
    try:
        render(chart, {})
        failures.append("rendering with no values must ask for secrets.databaseUrl")
    except helm_python.HelmError as e:
        check("secrets.databaseUrl is required" in str(e), f"no-values error is unclear: {e}")

    # Extra env from values (shoal.extraEnv) is the operator's business; the chart's own must be real.
    chart_env = env_names - {e["name"] for v in cases.values() for e in v.get("shoal", {}).get("extraEnv", [])}
    never, planned = unknown(root, chart_env, clusters=cluster_names)
    check(not never, f"the chart sets SHOAL_* variables no node reads: {never}")
    # Discovery is the chart's default now: every variable it sets must be read by the node today.
    check(not planned, f"the chart sets variables the node does not read yet: {planned}")
    print(f"helm: {len(chart_env)} SHOAL_* variables set by the chart, all read by the node; "
          f"Role verbs on pods = KUBERNETES_POD_VERBS {POD_VERBS}")
    check(any(deep_merge(defaults, v)["globalCluster"]["enabled"] for v in cases.values()),
          "ci: no rendering has globalCluster.enabled")
    if loaded:
        print(f"helm: the node's loader (shoal check-config) accepts {len(loaded)} renderings")

    for f in failures:
        print(f"helm: FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
