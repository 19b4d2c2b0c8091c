#!/usr/bin/env python3
"""Structural checks of the Terraform code, parsed with python-hcl2 (no provider can be
fetched here, so there is no `terraform validate` or plan).

    check_terraform.py TERRAFORM_DIR

Asserts what the ECS deployment relies on and what a reviewer would otherwise check by eye:
the node's IAM role grants exactly the two ECS discovery actions, scoped to its cluster; the
execution role reads exactly the module's three secrets; gossip (TCP and UDP) is open only
from the tasks' own security group; the HTTP port (console, admin API) is behind an internal
admin ALB of its own, open only to the operator's sources, and no data-plane listener forwards
to it; every variable is typed
and described; the rules that matter carry validations; the README tables list every input
and output. Run by scripts/check-deploy inside .venv-deploy.
"""

from __future__ import annotations

import re
import secrets as random_keys
import sys
import tomllib
from pathlib import Path

import hcl2
from node_constants import CLUSTER_ENV_PREFIX, SERVICES, check_config, cluster_env
from node_constants import ECS_IAM_ACTIONS as DISCOVERY_ACTIONS
from node_constants import unknown

failures: list[str] = []


def check(ok: bool, message: str) -> None:
    if not ok:
        failures.append(message)


def unquote(value):
    """python-hcl2 8 keeps the quotes of string literals and block labels: drop one level."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def load(path: Path) -> dict:
    with path.open() as f:
        return unquote(hcl2.load(f))


def blocks(doc: dict, kind: str) -> dict[tuple[str, str], dict]:
    """{(type, name): body} for `resource` / `data` blocks."""
    out = {}
    for entry in doc.get(kind, []):
        for type_, named in entry.items():
            for name, body in named.items():
                out[(type_, name)] = body
    return out


def named(doc: dict, kind: str) -> dict[str, dict]:
    """{name: body} for `variable` / `output` blocks."""
    return {name: body for entry in doc.get(kind, []) for name, body in entry.items()}


def check_module(module_dir: Path) -> None:
    docs = {p.name: load(p) for p in sorted(module_dir.glob("*.tf"))}
    for expected in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        check(expected in docs, f"{module_dir}: {expected} missing")
    resources: dict = {}
    data: dict = {}
    for doc in docs.values():
        resources.update(blocks(doc, "resource"))
        data.update(blocks(doc, "data"))
    variables = named(docs.get("variables.tf", {}), "variable")
    outputs = named(docs.get("outputs.tf", {}), "output")
    where = module_dir.name

    # Task role: exactly ListTasks + DescribeTasks, each conditioned on this cluster.
    task = data.get(("aws_iam_policy_document", "task"), {})
    statements = task.get("statement", [])
    actions = sorted(a for s in statements for a in s.get("actions", []))
    check(actions == DISCOVERY_ACTIONS, f"{where}: task role must grant exactly {DISCOVERY_ACTIONS}, got {actions}")
    for s in statements:
        conditions = {(c["test"], c["variable"]) for c in s.get("condition", [])}
        check(("ArnEquals", "ecs:cluster") in conditions, f"{where}: {s.get('sid')} must be scoped with ecs:cluster")
        check(s.get("effect", "Allow") == "Allow" and not s.get("not_actions"), f"{where}: {s.get('sid')} must be a plain Allow")
        if "ecs:DescribeTasks" in s.get("actions", []):
            check(all(":task/${local.cluster_name}/*" in r for r in s["resources"]),
                  f"{where}: DescribeTasks must be limited to tasks of the cluster, got {s['resources']}")
    policies = [b for (t, _), b in resources.items() if t == "aws_iam_role_policy" and "aws_iam_role.task." in str(b.get("role"))]
    check(len(policies) == 1 and "aws_iam_policy_document.task.json" in str(policies[0].get("policy")),
          f"{where}: the task role must carry exactly the discovery policy")
    # ...and only when the node calls the ECS API: with Cloud Map (dns-srv) it needs nothing.
    check(bool(policies) and str(policies[0].get("count")).replace(" ", "") == '${var.discovery_method=="ecs"?1:0}',
          f"{where}: the discovery policy must be attached only with discovery_method ecs, got count {policies[0].get('count') if policies else None}")
    check(not any(t == "aws_iam_role_policy_attachment" and "aws_iam_role.task." in str(b.get("role")) for (t, _), b in resources.items()),
          f"{where}: no managed policy may be attached to the task role")

    # Execution role: secrets read = exactly the three Shoal secrets.
    execution = data.get(("aws_iam_policy_document", "execution"), {})
    secret_statements = [s for s in execution.get("statement", []) if "secretsmanager:GetSecretValue" in s.get("actions", [])]
    check(len(secret_statements) == 1 and secret_statements[0].get("resources") == "${local.secret_arns}",
          f"{where}: the execution role must read exactly local.secret_arns")
    locals_ = {k: v for doc in docs.values() for entry in doc.get("locals", []) for k, v in entry.items()}
    secret_arns = str(locals_.get("secret_arns"))
    for name in ("cluster_psk", "secrets_key", "database_url"):
        check(f"local.{name}_secret_arn" in secret_arns, f"{where}: local.secret_arns must include the {name} secret")
    # ...and, with global_cluster, the global keys the operator gives.
    check(secret_arns.count("local.") == 4 and "local.global_psk_secret_arns" in secret_arns,
          f"{where}: local.secret_arns must hold exactly the three secrets and local.global_psk_secret_arns")
    check(str(locals_.get("global_psk_secret_arns")).replace(" ", "") == "${local.two_clusters?[var.global_cluster.psk_secret_arn]:[]}",
          f"{where}: local.global_psk_secret_arns must be global_cluster.psk_secret_arn with global_cluster only, got {locals_.get('global_psk_secret_arns')}")

    # Security groups: gossip TCP and UDP from the tasks' own group only; the rest from the ALBs only.
    ingress = {name: b for (t, name), b in resources.items() if t == "aws_vpc_security_group_ingress_rule"}
    check(not any(t == "aws_security_group_rule" for (t, _) in resources), f"{where}: use aws_vpc_security_group_*_rule only")
    for (t, name), b in resources.items():
        if t == "aws_security_group":
            check("ingress" not in b and "egress" not in b, f"{where}: aws_security_group.{name} must not carry inline rules")
    gossip = {name: b for name, b in ingress.items() if b.get("from_port") == "${var.gossip_port}"}
    global_rules = check_global_rules(where, resources, locals_)
    check(sorted(b["ip_protocol"] for b in gossip.values()) == ["tcp", "udp"],
          f"{where}: gossip ingress must be exactly one tcp and one udp rule, got {sorted(gossip)}")
    for name, b in gossip.items():
        check(b.get("security_group_id") == "${aws_security_group.tasks.id}"
              and b.get("referenced_security_group_id") == "${aws_security_group.tasks.id}"
              and "cidr_ipv4" not in b and "cidr_ipv6" not in b and b.get("to_port") == b.get("from_port"),
              f"{where}: gossip rule {name} must allow only the tasks' own security group")
    to_tasks = {name: b for name, b in ingress.items() if b.get("security_group_id") == "${aws_security_group.tasks.id}"}
    for name, b in to_tasks.items():
        if name in gossip or name in global_rules:
            continue
        check(b.get("referenced_security_group_id") in ("${aws_security_group.alb.id}", "${aws_security_group.admin_alb.id}")
              and "cidr_ipv4" not in b and "cidr_ipv6" not in b,
              f"{where}: task ingress {name} must come from one of the two ALB security groups only")
    check_admin_apart(where, resources, locals_, variables, ingress, to_tasks)

    # Service: >= 3 tasks (validated), rolling without capacity loss, circuit breaker with rollback.
    service = resources.get(("aws_ecs_service", "this"), {})
    check(service.get("deployment_minimum_healthy_percent") == 100, f"{where}: minimum healthy percent must be 100")
    check(service.get("deployment_maximum_percent") == 200, f"{where}: maximum percent must be 200")
    breaker = (service.get("deployment_circuit_breaker") or [{}])[0]
    check(breaker.get("enable") is True and breaker.get("rollback") is True, f"{where}: circuit breaker with rollback")
    check(str(service.get("desired_count")) == "${var.desired_count}", f"{where}: desired_count from the variable")
    desired = variables.get("desired_count", {})
    check(any(">= 3" in v.get("condition", "") for v in desired.get("validation", [])), f"{where}: desired_count must be validated >= 3")
    check("length(local.private_azs) >= 2" in str(service.get("lifecycle")), f"{where}: the service must require two AZs")

    # Target group health check on /ready; task definition in awsvpc with gossip TCP and UDP.
    tg = resources.get(("aws_lb_target_group", "http"), {})
    check((tg.get("health_check") or [{}])[0].get("path") == "/ready", f"{where}: target group health check must be /ready")
    taskdef = resources.get(("aws_ecs_task_definition", "this"), {})
    check(taskdef.get("network_mode") == "awsvpc", f"{where}: task definition must use awsvpc")
    ports = str(locals_.get("port_mappings"))
    check(ports.count("var.gossip_port") == 2 and "udp" in ports and "var.http_port" in ports and "var.data_plane_ports" in ports,
          f"{where}: port mappings must cover http, gossip tcp+udp and the data-plane ports")
    env = str(locals_.get("environment"))
    for name in ("SHOAL_DISCOVERY_METHOD", "SHOAL_DISCOVERY_DNS_SRV", "SHOAL_HTTP_LISTEN", "SHOAL_CLUSTER_BIND",
                 "SHOAL_LOG_FORMAT", "SHOAL_PROXY_ADDRESS"):
        check(name in env, f"{where}: container environment lacks {name}")
    # Data-plane ports are reached by the ALB on the task IP: every interface, not loopback.
    check(re.search(r'name = "SHOAL_PROXY_ADDRESS", value = "0\.0\.0\.0"', env) is not None,
          f"{where}: SHOAL_PROXY_ADDRESS must be 0.0.0.0")
    check("local.discovery_srv_name" in env, f"{where}: SHOAL_DISCOVERY_DNS_SRV must be the Cloud Map SRV name")

    # The advertised address comes from the image's ECS entrypoint (the task IP is known only at
    # run time); every command, the service's and a run-task override's, goes through it.
    container = str(locals_.get("container_with_nulls"))
    entrypoint = locals_.get("entrypoint")
    dockerfile = (module_dir.resolve().parents[2] / "Dockerfile").read_text()
    check(bool(entrypoint) and f" {entrypoint}\n" in dockerfile,
          f"{where}: local.entrypoint {entrypoint!r} must be a file the Dockerfile installs")
    check("'entryPoint': ['${local.entrypoint}']" in container and "'command': ['serve']" in container,
          f"{where}: the container must run local.entrypoint with the command serve")
    check("SHOAL_CLUSTER_ADVERTISE" not in env, f"{where}: the advertised address is the entrypoint's to set")
    check_two_clusters(module_dir, locals_, variables)

    # Cloud Map (dns-srv): SRV records of the tasks' gossip port, registered by the service.
    sd = resources.get(("aws_service_discovery_service", "gossip"), {})
    records = [r for c in sd.get("dns_config", []) for r in c.get("dns_records", [])]
    check([r.get("type") for r in records] == ["SRV"], f"{where}: the Cloud Map service must publish SRV records")
    check(str(locals_.get("discovery_srv_name")).startswith("gossip.") and sd.get("name") == "gossip",
          f"{where}: discovery_srv_name must be the Cloud Map service's name in the namespace")
    registries = [r for d in service.get("dynamic", []) for k, r in d.items() if k == "service_registries"]
    content = str(registries[0].get("content")) if registries else ""
    check("aws_service_discovery_service.gossip[0].arn" in content and "var.gossip_port" in content
          and "local.container_name" in content,
          f"{where}: the ECS service must register its tasks' gossip port in the Cloud Map service")
    secrets = str(locals_.get("secrets"))
    for name in ("SHOAL_DATABASE_URL", "SHOAL_CLUSTER_PSK", "SHOAL_SECRETS_KEY"):
        check(name in secrets, f"{where}: container secrets lack {name}")
    never, planned = unknown(module_dir.resolve().parents[2], re.findall(r"SHOAL_[A-Z_]+", env + secrets),
                             ecs_entrypoint=True)
    check("SHOAL_CLUSTERS_" not in env + secrets,
          f"{where}: per-cluster variables must be named through local.cluster_env (the cluster names are variables)")
    check(not never, f"{where}: the task sets SHOAL_* variables no node reads: {never}")
    if planned:
        print(f"terraform: planned variables not read by the node yet: {', '.join(planned)}")

    # Optional RDS: encrypted, private.
    db = resources.get(("aws_db_instance", "this"))
    if db:
        check(db.get("storage_encrypted") is True and db.get("publicly_accessible") is False,
              f"{where}: RDS must be encrypted and not publicly accessible")
    efs = resources.get(("aws_efs_file_system", "this"))
    if efs:
        check(efs.get("encrypted") is True, f"{where}: EFS must be encrypted")
    logs = resources.get(("aws_cloudwatch_log_group", "this"), {})
    check(logs.get("retention_in_days") == "${var.log_retention_days}", f"{where}: log retention from the variable")

    for rule in ("desired_count", "http_port", "gossip_port", "data_plane_ports", "log_level", "log_retention_days",
                 "alb_ingress_cidrs", "task_egress_cidrs", "private_subnet_ids", "discovery_method",
                 "cloud_map_namespace_name", "admin_subnet_ids", "admin_ingress_cidrs",
                 "admin_ingress_security_group_ids", "admin_certificate_arn", "global_cluster",
                 "global_cluster_ingress_cidrs"):
        check(bool(variables.get(rule, {}).get("validation")), f"{where}: variable {rule} needs a validation block")
    check_variables_and_outputs(module_dir, variables, outputs)
    for required in ("url", "alb_security_group_id", "tasks_security_group_id", "task_role_arn", "execution_role_arn",
                     "cluster_psk_secret_arn", "secrets_key_secret_arn", "database_url_secret_arn", "discovery_srv_name",
                     "admin_alb_dns_name", "admin_alb_security_group_id"):
        check(required in outputs, f"{where}: output {required} missing")


def check_global_rules(where: str, resources: dict, locals_: dict) -> set[str]:
    """global_cluster's port, TCP and UDP, open between the tasks and with the other regions'
    subnets (global_cluster_ingress_cidrs) only, in both directions, and nothing without
    global_cluster. Returns the names of its ingress rules."""
    names = set()
    for kind in ("ingress", "egress"):
        rules = {n: b for (t, n), b in resources.items() if t == f"aws_vpc_security_group_{kind}_rule"
                 and b.get("from_port") == "${local.global_port}"}
        check(sorted(rules) == ["global_gossip", "global_gossip_regions"],
              f"{where}: the global port's {kind} must be global_gossip and global_gossip_regions, got {sorted(rules)}")
        for n, b in rules.items():
            check(b.get("to_port") == "${local.global_port}" and b.get("ip_protocol") in ("${each.value}", "${each.value.protocol}")
                  and b.get("security_group_id") == "${aws_security_group.tasks.id}",
                  f"{where}: {kind} rule {n} must open the global port only, on the tasks' group")
        own, regions = rules.get("global_gossip", {}), rules.get("global_gossip_regions", {})
        check(own.get("referenced_security_group_id") == "${aws_security_group.tasks.id}" and "cidr_ipv4" not in own
              and own.get("for_each") == "${local.global_protocols}",
              f"{where}: global_gossip ({kind}) must be the tasks' own group, TCP and UDP")
        check(regions.get("cidr_ipv4") == "${each.value.cidr}" and "referenced_security_group_id" not in regions
              and regions.get("for_each") == "${local.global_regions}",
              f"{where}: global_gossip_regions ({kind}) must be the other regions' CIDRs only")
        if kind == "ingress":
            names = set(rules)
    protocols = str(locals_.get("global_protocols")).replace(" ", "")
    check("local.two_clusters" in protocols and '"tcp","udp"' in protocols,
          f"{where}: local.global_protocols must be tcp and udp with global_cluster only")
    regions = str(locals_.get("global_regions"))
    check("var.global_cluster_ingress_cidrs" in regions and "local.two_clusters" in regions,
          f"{where}: local.global_regions must come from var.global_cluster_ingress_cidrs, with global_cluster only")
    return names


def top_level(expr: str, separators: str) -> list[str]:
    """`expr` cut at the separators that stand outside brackets, strings and interpolations."""
    parts, stack, start, i = [], [], 0, 0
    while i < len(expr):
        c, top = expr[i], stack[-1] if stack else ""
        if top == '"':
            if c == '"':
                stack.pop()
            elif expr.startswith("${", i):
                stack.append("${")
                i += 1
        elif c == '"':
            stack.append('"')
        elif c in "([{":
            stack.append(c)
        elif c in ")]}":
            stack.pop()
        elif not stack and c in separators:
            parts.append(expr[start:i].strip())
            start = i + 1
        i += 1
    parts.append(expr[start:].strip())
    return parts


def gated(expr: str) -> tuple[str, str]:
    """(what a `concat(...)` of lists holds with one cluster, what it holds with two): each
    argument is either in both, or `local.two_clusters ? TWO : ONE`."""
    inner = expr.removeprefix("${").removesuffix("}")
    inner = inner[inner.index("(") + 1:inner.rindex(")")] if inner.startswith("concat(") else inner
    one, two = [], []
    for arg in top_level(inner, ","):
        if arg.startswith("local.two_clusters ?"):
            branches = top_level("?".join(top_level(arg, "?")[1:]), ":")
            two.append(branches[0])
            one.append(":".join(branches[1:]))
        else:
            one.append(arg)
            two.append(arg)
    return "\n".join(one), "\n".join(two)


TEMPLATE_DIRECTIVE = re.compile(r"%\{\s*(if\s+(\w+)|else|endif)\s*~?\}[ \t]*\n?")


def render_template(text: str, values: dict) -> str:
    """Terraform's templatefile for the subset clusters.toml.tftpl uses: ${name} and
    %{ if name ~} ... %{ else ~} ... %{ endif ~} on booleans, one directive a line."""
    out, stack, pos = [], [], 0
    for m in TEMPLATE_DIRECTIVE.finditer(text):
        if all(stack):
            out.append(text[pos:m.start()])
        if m.group(1).startswith("if"):
            stack.append(bool(values[m.group(2)]))
        elif m.group(1) == "else":
            stack[-1] = not stack[-1]
        else:
            stack.pop()
        pos = m.end()
    out.append(text[pos:])

    def value(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(m.group(1))
        return str(values[m.group(1)])
    return re.sub(r"\$\{(\w+)\}", value, "".join(out))


def check_two_clusters(module_dir: Path, locals_: dict, variables: dict) -> None:
    """global_cluster: what the task gets beside the single cluster's settings. The config file
    (clusters.toml.tftpl, through SHOAL_ECS_CONFIG_TOML) lists both clusters and [services];
    the single cluster's SHOAL_CLUSTER_* and SHOAL_DISCOVERY_* are left out; each cluster's
    keys arrive as SHOAL_CLUSTERS_<NAME>_PSK and its advertised address from the entrypoint
    (SHOAL_ECS_ADVERTISE); the global port is mapped TCP and UDP. The template is rendered
    here with sample values for each discovery branch and handed to the node's loader."""
    where = module_dir.name
    env = str(locals_.get("environment"))
    # Which variables the task gets with one cluster, with two, and with both.
    for what, names, only_two in (
        ("environment", env, ("SHOAL_ECS_CONFIG_TOML", "SHOAL_ECS_ADVERTISE")),
        ("secrets", str(locals_.get("secrets")), ("${local.cluster_env.regional}PSK", "${local.cluster_env.global}PSK")),
    ):
        one, two = gated(names)
        for name in ("SHOAL_DISCOVERY_DNS_SRV", "SHOAL_DISCOVERY_METHOD", "SHOAL_CLUSTER_BIND", "SHOAL_CLUSTER_NAME",
                     "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE", "SHOAL_CLUSTER_PSK"):
            check(name not in two, f"{where}: {name} must be left out of the {what} with global_cluster "
                                   "(the node refuses it beside [[clusters]])")
        for name in only_two:
            check(name in two and name not in one, f"{where}: {name} belongs to the {what} with global_cluster only")
        for name in ("SHOAL_HTTP_LISTEN", "SHOAL_PROXY_ADDRESS", "SHOAL_LOG_LEVEL", "SHOAL_DATABASE_URL", "SHOAL_SECRETS_KEY"):
            if name in names:
                check(name in one and name in two, f"{where}: {name} belongs to the {what} with one cluster and with two")
    advertise = re.search(r'name = "SHOAL_ECS_ADVERTISE", value = "([^"]*)"', env)
    check(bool(advertise) and advertise.group(1) ==
          "${var.shoal_cluster_name}:${var.gossip_port} ${var.global_cluster.name}:${var.global_cluster.port}",
          f"{where}: SHOAL_ECS_ADVERTISE must name both clusters with their ports, got {advertise.group(1) if advertise else None}")
    check('name = "SHOAL_ECS_CONFIG_TOML", value = local.clusters_toml' in env,
          f"{where}: SHOAL_ECS_CONFIG_TOML must be local.clusters_toml")
    prefixes = locals_.get("cluster_env")
    prefix_text = str(prefixes)
    check(f"{CLUSTER_ENV_PREFIX}${{upper(replace(var.shoal_cluster_name" in prefix_text
          and f"{CLUSTER_ENV_PREFIX}${{upper(replace(var.global_cluster.name" in prefix_text,
          f"{where}: local.cluster_env must be {CLUSTER_ENV_PREFIX}<NAME>_ for both clusters, got {prefix_text}")
    secrets = str(locals_.get("secrets"))
    for role, arn in (("regional", "local.cluster_psk_secret_arn"), ("global", "var.global_cluster.psk_secret_arn")):
        check(f'name = "${{local.cluster_env.{role}}}PSK", valueFrom = {arn}' in secrets,
              f"{where}: the {role} cluster's keys must be ${{local.cluster_env.{role}}}PSK from {arn}")
    ports = str(locals_.get("port_mappings"))
    check(ports.count("local.global_port") == 2 and "containerPort = local.global_port, protocol = \"udp\"" in ports
          and "containerPort = local.global_port, protocol = \"tcp\"" in ports,
          f"{where}: port mappings must add the global port TCP and UDP")
    check("var.global_cluster.port" in str(locals_.get("global_port")), f"{where}: local.global_port must be global_cluster.port")

    # The template and what main.tf passes to it.
    template_path = module_dir / "clusters.toml.tftpl"
    template = template_path.read_text() if template_path.exists() else ""
    call = re.search(r'templatefile\("\$\{path\.module\}/clusters\.toml\.tftpl", \{(.*)\}\)', str(locals_.get("clusters_toml")), re.S)
    check(bool(template) and bool(call), f"{where}: local.clusters_toml must be templatefile(clusters.toml.tftpl, {{...}})")
    if not (template and call):
        return
    passed = set(re.findall(r"(?:^|, )(\w+) = ", call.group(1)))
    used = set(re.findall(r"\$\{(\w+)\}", template)) | {m.group(2) for m in TEMPLATE_DIRECTIVE.finditer(template) if m.group(2)}
    check(passed == used, f"{where}: templatefile passes {sorted(passed - used)} unused and misses {sorted(used - passed)}")
    regional, world = "eu-west", "global"
    samples = {
        "regional_name": '"eu-west"', "regional_bind": '"0.0.0.0:7946"', "regional_srv_name": '"gossip.eu.shoal.internal"',
        "regional_port": 7946, "regional_allowed_address_space": '["10.1.1.0/24","10.1.2.0/24"]',
        "global_name": '"global"', "global_bind": '"0.0.0.0:7947"', "global_probe_interval": '"1s"',
        "global_probe_timeout": '"500ms"', "global_peers": '["shoal-global.us-east.example.internal:7947"]',
        "global_srv_name": '"_shoal._tcp.global.example.internal"',
        "global_allowed_address_space": '["10.1.1.0/24","10.1.2.0/24","10.2.0.0/16"]',
        "services_counters": '"eu-west"', "services_cache": '"eu-west"', "services_events": '"global"',
        "services_global_counters": '"global"',
    }
    for dns_srv, static in ((True, True), (False, False)):
        branch = f"regional {'dns-srv' if dns_srv else 'ecs'}, global {'static' if static else 'dns-srv'}"
        try:
            text = render_template(template, {**samples, "regional_dns_srv": dns_srv, "global_static": static})
            config = tomllib.loads(text)
        except (KeyError, tomllib.TOMLDecodeError) as e:
            failures.append(f"{where}: clusters.toml.tftpl ({branch}) does not render to TOML: {e!r}")
            continue
        clusters = config.get("clusters", [])
        check([c.get("name") for c in clusters] == [regional, world], f"{where}: clusters.toml.tftpl must list the regional then the global cluster")
        check(set(config.get("services", {})) == set(SERVICES), f"{where}: clusters.toml.tftpl [services] must name {SERVICES}")
        check(all("psk_file" not in c and "advertise" not in c for c in clusters),
              f"{where}: keys and advertised addresses come from the environment, not clusters.toml.tftpl")
        methods = [c.get("discovery", {}).get("method") for c in clusters]
        check(methods == ["dns-srv" if dns_srv else "ecs", "static" if static else "dns-srv"],
              f"{where}: clusters.toml.tftpl ({branch}) renders discovery {methods}")
        env_values = {
            "SHOAL_CONFIG": "/var/lib/shoal/shoal-ecs.toml", "SHOAL_DATA_DIR": "/var/lib/shoal",
            "SHOAL_HTTP_LISTEN": "0.0.0.0:8080", "SHOAL_PROXY_ADDRESS": "0.0.0.0",
            cluster_env(regional, "ADVERTISE"): "10.1.1.5:7946", cluster_env(world, "ADVERTISE"): "10.1.1.5:7947",
            cluster_env(regional, "PSK"): random_keys.token_hex(32), cluster_env(world, "PSK"): random_keys.token_hex(32),
            "SHOAL_SECRETS_KEY": random_keys.token_hex(32), "SHOAL_DATABASE_URL": "postgres://shoal@db:5432/shoal",
        }
        error = check_config({"/var/lib/shoal/shoal-ecs.toml": text}, env_values)
        check(error is None, f"{where}: the node refuses clusters.toml.tftpl ({branch}) with the task's variables: {error}")
    if not any("clusters.toml.tftpl" in f for f in failures):
        print("terraform: clusters.toml.tftpl renders for both discovery branches; the node's loader accepts it")


def check_admin_apart(where: str, resources: dict, locals_: dict, variables: dict, ingress: dict, to_tasks: dict) -> None:
    """The admin surface (the HTTP port: console, admin API, /ready, /metrics, /cluster/status)
    and the data plane on two load balancers, so that exposing the data plane never exposes the
    console; the admin one always internal and open only to what the operator lists. The Helm
    chart's admin Service follows the same rule (check_helm.py)."""
    lbs = {name: b for (t, name), b in resources.items() if t == "aws_lb"}
    check(sorted(lbs) == ["admin", "data_plane"], f"{where}: expected exactly the load balancers admin and data_plane, got {sorted(lbs)}")
    admin, data_plane = lbs.get("admin", {}), lbs.get("data_plane", {})
    check(admin.get("internal") is True, f"{where}: the admin ALB must be internal (the literal true, no variable)")
    check(admin.get("security_groups") == ["${aws_security_group.admin_alb.id}"], f"{where}: the admin ALB must use only the admin_alb security group")
    check(data_plane.get("security_groups") == ["${aws_security_group.alb.id}"], f"{where}: the data-plane ALB must use only the alb security group")

    # Listeners: the admin ALB's forwards to the HTTP target group, the data-plane ALB's to the
    # data-plane target groups; no listener rule could route elsewhere.
    check(not any(t == "aws_lb_listener_rule" for (t, _) in resources), f"{where}: no aws_lb_listener_rule: each listener forwards to one target group")
    listeners = {name: b for (t, name), b in resources.items() if t == "aws_lb_listener"}
    for name, b in listeners.items():
        lb = str(b.get("load_balancer_arn"))
        actions = b.get("default_action", [])
        targets = [a.get("target_group_arn") for a in actions]
        check(b.get("protocol") == "HTTPS" and all(a.get("type") == "forward" for a in actions),
              f"{where}: listener {name} must be HTTPS and forward")
        if lb == "${aws_lb.admin.arn}":
            check(targets == ["${aws_lb_target_group.http.arn}"], f"{where}: the admin listener {name} must forward to the HTTP target group only")
        elif lb == "${aws_lb.data_plane[0].arn}":
            check(targets == ["${aws_lb_target_group.data_plane[each.key].arn}"],
                  f"{where}: data-plane listener {name} must forward to its data-plane target group only, got {targets}")
        else:
            check(False, f"{where}: listener {name} on an unexpected load balancer {lb}")
    http_users = sorted(f"{t}.{n}" for (t, n), b in resources.items() if "aws_lb_target_group.http." in str(b))
    check(http_users == ["aws_ecs_service.this", "aws_lb_listener.admin"],
          f"{where}: the HTTP target group may be used by the admin listener and the ECS service only, got {http_users}")
    tg = resources.get(("aws_lb_target_group", "data_plane"), {})
    check(tg.get("for_each") == "${local.data_plane_ports}" and tg.get("port") == "${each.value}",
          f"{where}: data-plane target groups must target the data-plane ports")
    check((tg.get("health_check") or [{}])[0].get("port") == "${tostring(var.http_port)}",
          f"{where}: data-plane target groups check /ready on the HTTP port (the only use the data-plane ALB has for it)")
    service = resources.get(("aws_ecs_service", "this"), {})
    static = service.get("load_balancer", [])
    check(len(static) == 1 and static[0].get("target_group_arn") == "${aws_lb_target_group.http.arn}"
          and static[0].get("container_port") == "${var.http_port}",
          f"{where}: the service registers the HTTP port in the HTTP target group only")
    dynamic = [r for d in service.get("dynamic", []) for k, r in d.items() if k == "load_balancer"]
    check(len(dynamic) == 1 and str((dynamic[0].get("content") or [{}])[0].get("container_port")) == "${load_balancer.value}"
          and "aws_lb_target_group.data_plane[" in str(dynamic[0].get("content")),
          f"{where}: the service registers the data-plane ports, and only them, in the data-plane target groups")

    # Who reaches which load balancer: the data-plane ALB on the data-plane ports only; the
    # admin ALB on 443 only, from admin_ingress_cidrs and admin_ingress_security_group_ids, both
    # empty by default (closed until the operator allows a source).
    check(locals_.get("alb_listener_ports") == "${var.data_plane_ports}", f"{where}: the data-plane ALB must listen on the data-plane ports only")
    alb_in = {n: b for n, b in ingress.items() if b.get("security_group_id") == "${aws_security_group.alb.id}"}
    check(sorted(alb_in) == ["alb_listeners"] and alb_in["alb_listeners"].get("for_each") == "${local.alb_ingress}",
          f"{where}: the data-plane ALB's ingress must be alb_listeners only, got {sorted(alb_in)}")
    admin_in = {n: b for n, b in ingress.items() if b.get("security_group_id") == "${aws_security_group.admin_alb.id}"}
    check(sorted(admin_in) == ["admin_alb_from_cidrs", "admin_alb_from_security_groups"],
          f"{where}: the admin ALB's ingress must be admin_alb_from_cidrs and admin_alb_from_security_groups, got {sorted(admin_in)}")
    check(locals_.get("admin_listener_port") == 443, f"{where}: the admin listener port must be 443")
    for n, b in admin_in.items():
        check(b.get("from_port") == b.get("to_port") == "${local.admin_listener_port}", f"{where}: {n} must open the admin listener port only")
    check(admin_in.get("admin_alb_from_cidrs", {}).get("for_each") == "${local.admin_ingress_cidrs}"
          and "var.admin_ingress_cidrs" in str(locals_.get("admin_ingress_cidrs")),
          f"{where}: admin_alb_from_cidrs must come from var.admin_ingress_cidrs")
    check(admin_in.get("admin_alb_from_security_groups", {}).get("for_each") == "${local.admin_ingress_security_groups}"
          and "var.admin_ingress_security_group_ids" in str(locals_.get("admin_ingress_security_groups")),
          f"{where}: admin_alb_from_security_groups must come from var.admin_ingress_security_group_ids")
    for name in ("admin_ingress_cidrs", "admin_ingress_security_group_ids"):
        check(variables.get(name, {}).get("default") == [], f"{where}: {name} must default to [] (the console closed until allowed)")

    # The tasks: the HTTP port from the admin ALB; from the data-plane ALB the data-plane ports,
    # and the HTTP port for its health checks.
    from_admin = {n: b for n, b in to_tasks.items() if b.get("referenced_security_group_id") == "${aws_security_group.admin_alb.id}"}
    check(sorted(from_admin) == ["tasks_from_admin_alb"]
          and from_admin["tasks_from_admin_alb"].get("from_port") == from_admin["tasks_from_admin_alb"].get("to_port") == "${var.http_port}",
          f"{where}: the admin ALB must reach the tasks on the HTTP port only, got {sorted(from_admin)}")
    from_alb = {n: b for n, b in to_tasks.items() if b.get("referenced_security_group_id") == "${aws_security_group.alb.id}"}
    check(sorted(from_alb) == ["tasks_from_alb"] and "local.task_ports_from_alb" in str(from_alb["tasks_from_alb"].get("for_each")),
          f"{where}: the data-plane ALB must reach the tasks through tasks_from_alb only, got {sorted(from_alb)}")
    ports = str(locals_.get("task_ports_from_alb"))
    check("var.data_plane_ports" in ports and "var.http_port" in ports,
          f"{where}: local.task_ports_from_alb must be the data-plane ports plus the HTTP port (health checks)")
    egress = {n: b for (t, n), b in resources.items() if t == "aws_vpc_security_group_egress_rule"
              and b.get("security_group_id") == "${aws_security_group.admin_alb.id}"}
    check(sorted(egress) == ["admin_alb_to_tasks"] and egress["admin_alb_to_tasks"].get("from_port") == "${var.http_port}"
          and egress["admin_alb_to_tasks"].get("referenced_security_group_id") == "${aws_security_group.tasks.id}",
          f"{where}: the admin ALB's egress must be the tasks' HTTP port only")


def check_variables_and_outputs(directory: Path, variables: dict, outputs: dict) -> None:
    readme = directory / "README.md"
    text = readme.read_text() if readme.exists() else ""
    check(bool(text), f"{directory}: README.md missing")
    for name, body in variables.items():
        check(bool(body.get("description")), f"{directory.name}: variable {name} has no description")
        check("type" in body, f"{directory.name}: variable {name} has no type")
        for v in body.get("validation", []):
            message = v.get("error_message", "")
            check(len(message) > 20 and message.endswith("."), f"{directory.name}: variable {name}: error_message should be a full sentence")
        check(f"`{name}`" in text, f"{directory.name}/README.md: inputs table misses `{name}`")
    for name, body in outputs.items():
        check(bool(body.get("description")), f"{directory.name}: output {name} has no description")
        check(f"`{name}`" in text, f"{directory.name}/README.md: outputs table misses `{name}`")


def check_example(example_dir: Path, module_dir: Path) -> None:
    docs = [load(p) for p in sorted(example_dir.glob("*.tf"))]
    modules = {name: body for doc in docs for entry in doc.get("module", []) for name, body in entry.items()}
    check(len(modules) == 1, f"{example_dir}: expected one module block")
    for name, body in modules.items():
        source = body.get("source")
        check(source == "../../modules/shoal-ecs", f"{example_dir}: module source must be ../../modules/shoal-ecs, got {source}")
        check((example_dir / source).resolve() == module_dir.resolve(), f"{example_dir}: module source does not resolve")
        module_vars = named(load(module_dir / "variables.tf"), "variable")
        required = {n for n, b in module_vars.items() if "default" not in b}
        given = set(body) - {"source", "version"}
        check(required <= given, f"{example_dir}: required module inputs not set: {sorted(required - given)}")
        check(given <= set(module_vars), f"{example_dir}: unknown module inputs: {sorted(given - set(module_vars))}")
    variables = {n: b for doc in docs for n, b in named(doc, "variable").items()}
    outputs = {n: b for doc in docs for n, b in named(doc, "output").items()}
    for name, body in variables.items():
        check(bool(body.get("description")) and "type" in body, f"{example_dir.name}: variable {name} needs type and description")
    for name, body in outputs.items():
        check(bool(body.get("description")), f"{example_dir.name}: output {name} needs a description")


def main() -> int:
    root = Path(sys.argv[1])
    tf_files = sorted(root.rglob("*.tf"))
    check(bool(tf_files), f"{root}: no .tf files")
    for path in tf_files:
        try:
            load(path)
        except Exception as e:  # noqa: BLE001 - any parse error is a failure to report
            failures.append(f"{path}: does not parse: {e}")
    if failures:
        for f in failures:
            print(f"terraform: FAIL {f}", file=sys.stderr)
        return 1
    module_dir = root / "modules" / "shoal-ecs"
    check_module(module_dir)
    check_example(root / "examples" / "complete", module_dir)
    # Every checkov skip carries a reason after the id.
    for path in tf_files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip=" in line:
                check(re.search(r"checkov:skip=CKV2?_[A-Z0-9_]+:\S.{10,}", line) is not None,
                      f"{path}:{n}: checkov skip without a reason")
    for f in failures:
        print(f"terraform: FAIL {f}", file=sys.stderr)
    if not failures:
        print(f"terraform: {len(tf_files)} files parsed, module and example checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
