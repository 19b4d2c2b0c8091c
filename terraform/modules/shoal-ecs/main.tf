data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_subnet" "private" {
  for_each = toset(var.private_subnet_ids)
  id       = each.value
}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  create_cluster = var.existing_cluster_arn == null
  cluster_arn    = local.create_cluster ? aws_ecs_cluster.this[0].arn : var.existing_cluster_arn
  cluster_name   = local.create_cluster ? aws_ecs_cluster.this[0].name : element(split("/", var.existing_cluster_arn), 1)

  create_kms  = var.kms_key_arn == null
  kms_key_arn = local.create_kms ? aws_kms_key.this[0].arn : var.kms_key_arn

  private_azs = distinct([for s in data.aws_subnet.private : s.availability_zone])

  # Built from the name, not the resource, so the KMS key policy can name it without a cycle.
  log_group_name = "/ecs/${var.name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"

  cluster_psk_secret_arn  = var.cluster_psk_secret_arn != null ? var.cluster_psk_secret_arn : aws_secretsmanager_secret.cluster_psk[0].arn
  secrets_key_secret_arn  = var.secrets_key_secret_arn != null ? var.secrets_key_secret_arn : aws_secretsmanager_secret.secrets_key[0].arn
  database_url_secret_arn = var.database_url_secret_arn != null ? var.database_url_secret_arn : aws_secretsmanager_secret.database_url[0].arn
  # The global cluster's keys are given, never generated: every region must hold the same.
  global_psk_secret_arns = local.two_clusters ? [var.global_cluster.psk_secret_arn] : []
  secret_arns            = concat([local.cluster_psk_secret_arn, local.secrets_key_secret_arn, local.database_url_secret_arn], local.global_psk_secret_arns)
  # A replica of another region's secret may be under a key of its own.
  secret_kms_key_arns = distinct(compact([local.kms_key_arn, try(var.global_cluster.psk_kms_key_arn, null)]))

  data_plane_ports = { for p in var.data_plane_ports : tostring(p) => p }

  # The admin load balancer sits in the private subnets unless told otherwise, and presents
  # the data plane's certificate unless it has its own.
  admin_subnet_ids      = var.admin_subnet_ids != null ? var.admin_subnet_ids : var.private_subnet_ids
  admin_certificate_arn = var.admin_certificate_arn != null ? var.admin_certificate_arn : var.certificate_arn

  container_name = "shoal"
  data_dir       = "/var/lib/shoal"
  # In the image (Dockerfile); fills in SHOAL_CLUSTER_ADVERTISE from the task metadata endpoint.
  entrypoint = "/usr/local/bin/shoal-ecs-entrypoint"

  # dns-srv: ECS registers every task's IP and gossip port in Cloud Map, whose SRV records the
  # nodes poll. ecs: the planned ECS discovery provider (issue 8) lists the service's tasks
  # itself (ListTasks + DescribeTasks).
  cloud_map           = var.discovery_method == "dns-srv"
  cloud_map_namespace = var.cloud_map_namespace_name != null ? var.cloud_map_namespace_name : "${var.name}.shoal.internal"
  discovery_srv_name  = "gossip.${local.cloud_map_namespace}"
  # Tasks only run in the private subnets: no address outside them is ever joined.
  private_cidrs = [for s in data.aws_subnet.private : s.cidr_block]

  # global_cluster: a second cluster beside the regional one (shoal_cluster_name, gossip_port,
  # discovery_method). Two clusters can only be listed in a config file, and the node refuses
  # the single cluster's SHOAL_CLUSTER_* and SHOAL_DISCOVERY_* variables beside it: the file
  # carries both entries and [services], the environment what differs per task.
  two_clusters = var.global_cluster != null
  global_port  = local.two_clusters ? var.global_cluster.port : null
  # The prefix of each entry's variables, SHOAL_CLUSTERS_<NAME>_ (NAME upper-cased, '-' as '_').
  cluster_env = local.two_clusters ? {
    regional = "SHOAL_CLUSTERS_${upper(replace(var.shoal_cluster_name, "-", "_"))}_"
    global   = "SHOAL_CLUSTERS_${upper(replace(var.global_cluster.name, "-", "_"))}_"
  } : null
  cluster_names = local.two_clusters ? { regional = var.shoal_cluster_name, global = var.global_cluster.name } : null
  clusters_toml = local.two_clusters ? templatefile("${path.module}/clusters.toml.tftpl", {
    regional_name                  = jsonencode(var.shoal_cluster_name)
    regional_bind                  = jsonencode("0.0.0.0:${var.gossip_port}")
    regional_dns_srv               = local.cloud_map
    regional_srv_name              = jsonencode(local.discovery_srv_name)
    regional_port                  = var.gossip_port
    regional_allowed_address_space = jsonencode(local.private_cidrs)
    global_name                    = jsonencode(var.global_cluster.name)
    global_bind                    = jsonencode("0.0.0.0:${var.global_cluster.port}")
    global_probe_interval          = jsonencode(var.global_cluster.probe_interval)
    global_probe_timeout           = jsonencode(var.global_cluster.probe_timeout)
    global_static                  = var.global_cluster.discovery_method == "static"
    global_peers                   = jsonencode(var.global_cluster.peers)
    global_srv_name                = jsonencode(var.global_cluster.dns_srv_name)
    global_allowed_address_space   = jsonencode(length(var.global_cluster.allowed_address_space) > 0 ? distinct(concat(local.private_cidrs, var.global_cluster.allowed_address_space)) : [])
    services_counters              = jsonencode(local.cluster_names[var.global_cluster.services.counters])
    services_cache                 = jsonencode(local.cluster_names[var.global_cluster.services.cache])
    services_events                = jsonencode(local.cluster_names[var.global_cluster.services.events])
    services_global_counters       = jsonencode(local.cluster_names[var.global_cluster.services.global_counters])
  }) : null

  # With one cluster, SHOAL_CLUSTER_* and SHOAL_DISCOVERY_* in the order they always had (a
  # reordered list would be a new task definition); with two, none of them.
  environment = concat(
    local.two_clusters ? [] : local.cloud_map ? [{ name = "SHOAL_DISCOVERY_DNS_SRV", value = local.discovery_srv_name }] : [{ name = "SHOAL_DISCOVERY_METHOD", value = "ecs" }],
    [
      { name = "SHOAL_HTTP_LISTEN", value = "0.0.0.0:${var.http_port}" },
      { name = "SHOAL_HTTP_SHUTDOWN_GRACE", value = "${var.shutdown_grace_seconds}s" },
    ],
    # SHOAL_CLUSTER_ADVERTISE (required with a wildcard bind) is the task's IP, known only at
    # run time: the entrypoint reads it from the task metadata endpoint.
    local.two_clusters ? [] : [{ name = "SHOAL_CLUSTER_BIND", value = "0.0.0.0:${var.gossip_port}" }],
    # Data-plane ports are reached by the ALB on the task's IP, not on loopback.
    [{ name = "SHOAL_PROXY_ADDRESS", value = "0.0.0.0" }],
    local.two_clusters ? [
      # The entrypoint writes the file and sets SHOAL_CONFIG, and advertises the task IP on
      # each cluster's port as SHOAL_CLUSTERS_<NAME>_ADVERTISE.
      { name = "SHOAL_ECS_CONFIG_TOML", value = local.clusters_toml },
      { name = "SHOAL_ECS_ADVERTISE", value = "${var.shoal_cluster_name}:${var.gossip_port} ${var.global_cluster.name}:${var.global_cluster.port}" },
      ] : [
      { name = "SHOAL_CLUSTER_NAME", value = var.shoal_cluster_name },
      { name = "SHOAL_DISCOVERY_ALLOWED_ADDRESS_SPACE", value = join(",", local.private_cidrs) },
    ],
    [
      { name = "SHOAL_LOG_FORMAT", value = "json" },
      { name = "SHOAL_LOG_LEVEL", value = var.log_level },
    ],
    # EFS is shared by every task, but a node's audit spool must have a single writer: with
    # SHOAL_ECS_DATA_ROOT the entrypoint gives each task its own subdirectory, named after its
    # (unique) host name.
    var.enable_efs ? [{ name = "SHOAL_ECS_DATA_ROOT", value = local.data_dir }] : [{ name = "SHOAL_DATA_DIR", value = local.data_dir }],
  )

  # Secrets reach the container as environment variables resolved by ECS at task start; they
  # never appear in the task definition.
  # With two clusters each has its own keys, under its entry's variable.
  secrets = concat(
    [{ name = "SHOAL_DATABASE_URL", valueFrom = local.database_url_secret_arn }],
    local.two_clusters ? [
      { name = "${local.cluster_env.regional}PSK", valueFrom = local.cluster_psk_secret_arn },
      { name = "${local.cluster_env.global}PSK", valueFrom = var.global_cluster.psk_secret_arn },
    ] : [{ name = "SHOAL_CLUSTER_PSK", valueFrom = local.cluster_psk_secret_arn }],
    [{ name = "SHOAL_SECRETS_KEY", valueFrom = local.secrets_key_secret_arn }],
  )

  port_mappings = concat(
    [
      { name = "http", containerPort = var.http_port, protocol = "tcp" },
      { name = "gossip", containerPort = var.gossip_port, protocol = "tcp" },
      { name = "gossip-udp", containerPort = var.gossip_port, protocol = "udp" },
    ],
    local.two_clusters ? [
      { name = "global-gossip", containerPort = local.global_port, protocol = "tcp" },
      { name = "global-gossip-udp", containerPort = local.global_port, protocol = "udp" },
    ] : [],
    [for p in var.data_plane_ports : { name = "data-${p}", containerPort = p, protocol = "tcp" }],
  )

  container_with_nulls = {
    name                   = local.container_name
    image                  = var.image
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    portMappings           = local.port_mappings
    environment            = local.environment
    secrets                = local.secrets
    mountPoints            = [{ sourceVolume = "data", containerPath = local.data_dir, readOnly = false }]
    # Past the node's own drain deadline, so it finishes requests and leaves the cluster
    # before ECS sends SIGKILL.
    stopTimeout = min(120, var.shutdown_grace_seconds + 15)
    linuxParameters = {
      capabilities = { drop = ["ALL"] }
    }
    healthCheck = {
      command     = ["CMD", "curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:${var.http_port}/health"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 15
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.log_group_name
        awslogs-region        = local.region
        awslogs-stream-prefix = "shoal"
        # A slow log pipeline must not block request handling.
        mode            = "non-blocking"
        max-buffer-size = "4m"
      }
    }
    # A one-off task (`aws ecs run-task`) overrides only the command, e.g. ["admin", "create",
    # "--username", "admin", "--generate"]; the entrypoint stays.
    entryPoint = [local.entrypoint]
    command    = ["serve"]
  }
  # Unset optional fields are left out instead of sent as null, so plans show no spurious diffs.
  container = { for k, v in local.container_with_nulls : k => v if v != null }

  tags = var.tags
}

################################################################################
# KMS
################################################################################

resource "aws_kms_key" "this" {
  count = local.create_kms ? 1 : 0

  description             = "${var.name}: Shoal secrets, logs, database and EFS"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[0].json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  count = local.create_kms ? 1 : 0

  name          = "alias/${var.name}-shoal"
  target_key_id = aws_kms_key.this[0].key_id
}

data "aws_iam_policy_document" "kms" {
  count = local.create_kms ? 1 : 0

  # Standard key policy root statement: lets IAM policies in this account grant use of the key
  # (Secrets Manager, RDS and EFS use it on behalf of principals allowed by IAM). In a key
  # policy, Resource "*" means this key.
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this module's log group only.
  statement {
    sid       = "CloudWatchLogsForTheLogGroup"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [local.log_group_arn]
    }
  }
}

################################################################################
# Secrets: cluster PSK, secrets-at-rest key, database URL
################################################################################

# 32 random bytes, hex-encoded: the key format Shoal expects. Generated values are stored in
# the Terraform state, which must therefore be encrypted and access-controlled.
resource "random_id" "cluster_psk" {
  count       = var.cluster_psk_secret_arn == null ? 1 : 0
  byte_length = 32
}

resource "random_id" "secrets_key" {
  count       = var.secrets_key_secret_arn == null ? 1 : 0
  byte_length = 32
}

resource "aws_secretsmanager_secret" "cluster_psk" {
  count = var.cluster_psk_secret_arn == null ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The PSK rotates through a keyring procedure (accept old+new, then send new; docs/cluster.md) that a single-value rotation Lambda cannot perform.

  name_prefix             = "${var.name}/cluster-psk-"
  description             = "Shoal gossip pre-shared key (32 bytes, hex)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "cluster_psk" {
  count = var.cluster_psk_secret_arn == null ? 1 : 0

  secret_id     = aws_secretsmanager_secret.cluster_psk[0].id
  secret_string = random_id.cluster_psk[0].hex
}

resource "aws_secretsmanager_secret" "secrets_key" {
  count = var.secrets_key_secret_arn == null ? 1 : 0
  #checkov:skip=CKV2_AWS_57:This key encrypts S3 credentials stored in PostgreSQL; replacing it without re-encrypting them would make them unreadable, so it is not rotated automatically.

  name_prefix             = "${var.name}/secrets-key-"
  description             = "Shoal key encrypting S3 credentials at rest (32 bytes, hex)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "secrets_key" {
  count = var.secrets_key_secret_arn == null ? 1 : 0

  secret_id     = aws_secretsmanager_secret.secrets_key[0].id
  secret_string = random_id.secrets_key[0].hex
}

resource "aws_secretsmanager_secret" "database_url" {
  count = var.database_url_secret_arn == null ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The URL embeds the database password; rotating it means changing the password in PostgreSQL and redeploying, which the operator (or RDS) drives, not a generic rotation Lambda.

  name_prefix             = "${var.name}/database-url-"
  description             = "Shoal control plane PostgreSQL URL"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "database_url" {
  count = var.database_url_secret_arn == null ? 1 : 0

  secret_id = aws_secretsmanager_secret.database_url[0].id
  # sslmode=require: RDS certificates come from Amazon's own CA, which is not in the public
  # trust store the node uses, so the connection is encrypted without CA verification.
  secret_string = var.create_rds ? format(
    "postgres://%s:%s@%s:%d/%s?sslmode=require",
    aws_db_instance.this[0].username,
    random_password.rds[0].result,
    aws_db_instance.this[0].address,
    aws_db_instance.this[0].port,
    aws_db_instance.this[0].db_name,
  ) : var.database_url
}

################################################################################
# Logs
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

################################################################################
# IAM: execution role (start the task) and task role (the node's own API calls)
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused-deputy guard: only ECS acting for this account may assume the roles.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "Starts ${var.name} Shoal tasks: pulls the image, writes logs, reads the three Shoal secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:log-stream:*"]
  }

  # Exactly this module's secrets: the PSK, the secrets key and the database URL (and the
  # global cluster's keys with global_cluster).
  statement {
    sid       = "ReadShoalSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }

  statement {
    sid       = "DecryptShoalSecrets"
    actions   = ["kms:Decrypt"]
    resources = local.secret_kms_key_arns

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid     = "EcrAuthorization"
      actions = ["ecr:GetAuthorizationToken"]
      # GetAuthorizationToken has no resource type: it cannot be scoped to a repository.
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid       = "PullShoalImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
      resources = var.ecr_repository_arns
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name_prefix = "shoal-execution-"
  role        = aws_iam_role.execution.id
  policy      = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "Shoal nodes of ${var.name}: ECS discovery permissions with discovery_method ecs, none with dns-srv"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

# ECS discovery calls exactly these two actions; nothing else is granted to the node.
data "aws_iam_policy_document" "task" {
  statement {
    sid     = "ListTasksOfOwnCluster"
    actions = ["ecs:ListTasks"]
    # ListTasks is authorised on container instances, never on a cluster ARN: it is scoped
    # with the ecs:cluster condition instead.
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "DescribeTasksOfOwnCluster"
    actions   = ["ecs:DescribeTasks"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.cluster_name}/*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
}

# Only the ecs method calls the ECS API; with dns-srv (Cloud Map) the task role grants nothing.
resource "aws_iam_role_policy" "task" {
  count = var.discovery_method == "ecs" ? 1 : 0

  name_prefix = "shoal-discovery-"
  role        = aws_iam_role.task.id
  policy      = data.aws_iam_policy_document.task.json
}

################################################################################
# Security groups
################################################################################

# The admin surface (the nodes' HTTP port: console, admin API, /health, /ready, /metrics,
# /cluster/status) and the data plane (the resource ports) sit behind two load balancers with
# a security group each, so that opening the data plane to clients never opens the console.

# The data-plane load balancer's group.
resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-"
  description = "Shoal ${var.name} load balancer"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

# The admin load balancer's group: 443 from what the operator allows, nothing else.
resource "aws_security_group" "admin_alb" {
  name_prefix = "${var.name}-admin-alb-"
  description = "Shoal ${var.name} admin load balancer (console and admin API)"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-admin-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-tasks-"
  description = "Shoal ${var.name} tasks"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-tasks" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # The data-plane load balancer listens on the data-plane ports and nothing else: no 443 and
  # no 80, no listener that could lead to the HTTP port.
  alb_listener_ports = var.data_plane_ports
  alb_ingress = {
    for pair in setproduct(var.alb_ingress_cidrs, local.alb_listener_ports) :
    "${pair[0]}_${pair[1]}" => { cidr = pair[0], port = pair[1] }
  }
  # It forwards to the data-plane ports, and reaches the HTTP port only for its target groups'
  # health checks (GET /ready): none of its listeners forwards there.
  task_ports_from_alb = length(var.data_plane_ports) > 0 ? concat(var.data_plane_ports, [var.http_port]) : []

  # The admin load balancer: HTTPS on 443 from the operator's networks and security groups.
  # Keyed by position, so groups created in the same configuration (IDs unknown until apply)
  # can be listed.
  admin_listener_port = 443
  admin_ingress_cidrs = toset(var.admin_ingress_cidrs)
  admin_ingress_security_groups = {
    for i, sg in var.admin_ingress_security_group_ids : tostring(i) => sg
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_listeners" {
  for_each = local.alb_ingress

  security_group_id = aws_security_group.alb.id
  description       = "Clients to data-plane listener ${each.value.port}"
  cidr_ipv4         = each.value.cidr
  from_port         = each.value.port
  to_port           = each.value.port
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  for_each = toset([for p in local.task_ports_from_alb : tostring(p)])

  security_group_id            = aws_security_group.alb.id
  description                  = each.value == tostring(var.http_port) ? "Data-plane ALB health checks (/ready) to Shoal tasks on the HTTP port" : "Data-plane ALB to Shoal tasks on ${each.value}"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  for_each = toset([for p in local.task_ports_from_alb : tostring(p)])

  security_group_id            = aws_security_group.tasks.id
  description                  = each.value == tostring(var.http_port) ? "Data-plane ALB health checks (/ready) on the HTTP port; no data-plane listener forwards there" : "Data-plane ALB to Shoal resource port ${each.value}"
  referenced_security_group_id = aws_security_group.alb.id
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "admin_alb_from_cidrs" {
  for_each = local.admin_ingress_cidrs

  security_group_id = aws_security_group.admin_alb.id
  description       = "Operators to the Shoal console and admin API (HTTPS)"
  cidr_ipv4         = each.value
  from_port         = local.admin_listener_port
  to_port           = local.admin_listener_port
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "admin_alb_from_security_groups" {
  for_each = local.admin_ingress_security_groups

  security_group_id            = aws_security_group.admin_alb.id
  description                  = "Operators (bastion, VPN, SSM hosts) to the Shoal console and admin API (HTTPS)"
  referenced_security_group_id = each.value
  from_port                    = local.admin_listener_port
  to_port                      = local.admin_listener_port
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "admin_alb_to_tasks" {
  security_group_id            = aws_security_group.admin_alb.id
  description                  = "Admin ALB to Shoal tasks on the HTTP port (console, admin API, health checks)"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = var.http_port
  to_port                      = var.http_port
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_admin_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Admin ALB to Shoal on the HTTP port (console, admin API and health checks)"
  referenced_security_group_id = aws_security_group.admin_alb.id
  from_port                    = var.http_port
  to_port                      = var.http_port
  ip_protocol                  = "tcp"
}

# Gossip only between Shoal tasks: TCP for joins and state exchange, UDP for probes.
resource "aws_vpc_security_group_ingress_rule" "gossip_tcp" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Gossip (TCP) between Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = var.gossip_port
  to_port                      = var.gossip_port
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "gossip_udp" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Gossip (UDP) between Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = var.gossip_port
  to_port                      = var.gossip_port
  ip_protocol                  = "udp"
}

resource "aws_vpc_security_group_egress_rule" "gossip_tcp" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Gossip (TCP) to other Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = var.gossip_port
  to_port                      = var.gossip_port
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "gossip_udp" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Gossip (UDP) to other Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = var.gossip_port
  to_port                      = var.gossip_port
  ip_protocol                  = "udp"
}

# global_cluster: its own port, TCP and UDP, between this region's tasks and with the other
# regions' task subnets (global_cluster_ingress_cidrs), in both directions; nothing else
# reaches it.
locals {
  global_protocols = local.two_clusters ? toset(["tcp", "udp"]) : toset([])
  global_regions = local.two_clusters ? {
    for pair in setproduct(var.global_cluster_ingress_cidrs, ["tcp", "udp"]) :
    "${pair[0]}_${pair[1]}" => { cidr = pair[0], protocol = pair[1] }
  } : {}
}

resource "aws_vpc_security_group_ingress_rule" "global_gossip" {
  for_each = local.global_protocols

  security_group_id            = aws_security_group.tasks.id
  description                  = "Global cluster gossip (${upper(each.value)}) between Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = local.global_port
  to_port                      = local.global_port
  ip_protocol                  = each.value
}

resource "aws_vpc_security_group_ingress_rule" "global_gossip_regions" {
  for_each = local.global_regions

  security_group_id = aws_security_group.tasks.id
  description       = "Global cluster gossip (${upper(each.value.protocol)}) from the Shoal tasks of another region"
  cidr_ipv4         = each.value.cidr
  from_port         = local.global_port
  to_port           = local.global_port
  ip_protocol       = each.value.protocol
}

resource "aws_vpc_security_group_egress_rule" "global_gossip" {
  for_each = local.global_protocols

  security_group_id            = aws_security_group.tasks.id
  description                  = "Global cluster gossip (${upper(each.value)}) to other Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = local.global_port
  to_port                      = local.global_port
  ip_protocol                  = each.value
}

resource "aws_vpc_security_group_egress_rule" "global_gossip_regions" {
  for_each = local.global_regions

  security_group_id = aws_security_group.tasks.id
  description       = "Global cluster gossip (${upper(each.value.protocol)}) to the Shoal tasks of another region"
  cidr_ipv4         = each.value.cidr
  from_port         = local.global_port
  to_port           = local.global_port
  ip_protocol       = each.value.protocol
}

resource "aws_vpc_security_group_egress_rule" "tasks_tcp" {
  for_each = toset(var.task_egress_cidrs)

  security_group_id = aws_security_group.tasks.id
  description       = "TCP to PostgreSQL, AWS APIs and resource upstreams"
  cidr_ipv4         = each.value
  from_port         = 0
  to_port           = 65535
  ip_protocol       = "tcp"
}

################################################################################
# Load balancers
################################################################################

# State written before the admin surface had a load balancer of its own: the ALB that
# carried both keeps its name and DNS name and becomes the data-plane ALB (with no
# data_plane_ports it is destroyed), and the HTTPS listener on 443 moves to the admin ALB.
moved {
  from = aws_lb.this
  to   = aws_lb.data_plane[0]
}

moved {
  from = aws_lb_listener.https
  to   = aws_lb_listener.admin
}

# The data plane: one HTTPS listener per data-plane port, each forwarding to that port's
# target group only. Internet-facing if the operator wants (alb_internal = false): the
# console and the admin API are never behind it. Not created without data_plane_ports.
resource "aws_lb" "data_plane" {
  count = length(var.data_plane_ports) > 0 ? 1 : 0

  name               = var.name
  internal           = var.alb_internal
  load_balancer_type = "application"
  security_groups    = [aws_security_group.alb.id]
  subnets            = var.public_subnet_ids

  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  # A connection idle for longer is closed (large S3 transfers keep data flowing).
  idle_timeout = 120

  #checkov:skip=CKV2_AWS_28:A WAF is the operator's choice (its rules depend on the traffic and it is billed per rule); attach one to the alb_arn output.
  # Access logs need a bucket with an ELB delivery policy, which this module does not own.
  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = local.tags
}

# The admin surface: the nodes' HTTP port (console, admin API, /health, /ready, /metrics,
# /cluster/status). Always internal, in the private subnets unless admin_subnet_ids says
# otherwise, HTTPS only, and reachable only from admin_ingress_cidrs and
# admin_ingress_security_group_ids (nothing by default).
resource "aws_lb" "admin" {
  name               = "${var.name}-admin"
  internal           = true
  load_balancer_type = "application"
  security_groups    = [aws_security_group.admin_alb.id]
  subnets            = local.admin_subnet_ids

  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  # Above the admin API's long-poll (config/wait) so the ALB does not cut it.
  idle_timeout = 120

  #checkov:skip=CKV2_AWS_28:A WAF is the operator's choice (its rules depend on the traffic and it is billed per rule); this ALB is internal and admits only the operator's sources. Attach one to the admin_alb_arn output.
  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "${var.name}-admin"
      enabled = true
    }
  }

  tags = local.tags
}

# The admin ALB's only target group. Plain HTTP between the ALB and the tasks: Shoal serves
# HTTP, and the hop stays inside the VPC behind security groups that admit only the ALBs.
resource "aws_lb_target_group" "http" {
  name                 = "${var.name}-http"
  port                 = var.http_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.shutdown_grace_seconds

  # /ready is 503 until the node loaded its config and joined the cluster, and again while it
  # drains, so the ALB only routes to nodes that can enforce cluster-wide limits.
  health_check {
    path                = "/ready"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.tags
}

resource "aws_lb_target_group" "data_plane" {
  for_each = local.data_plane_ports

  name                 = "${var.name}-dp-${each.key}"
  port                 = each.value
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.shutdown_grace_seconds

  # A resource port answers only for its resource; node readiness lives on the HTTP port.
  # The check is the only thing of the data-plane ALB that reaches that port.
  health_check {
    path                = "/ready"
    port                = tostring(var.http_port)
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.tags
}

resource "aws_lb_listener" "admin" {
  load_balancer_arn = aws_lb.admin.arn
  port              = local.admin_listener_port
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = local.admin_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.http.arn
  }

  tags = local.tags
}

resource "aws_lb_listener" "data_plane" {
  for_each = local.data_plane_ports

  load_balancer_arn = aws_lb.data_plane[0].arn
  port              = each.value
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.data_plane[each.key].arn
  }

  tags = local.tags
}

################################################################################
# Discovery: Cloud Map SRV records of the tasks (discovery_method = "dns-srv")
################################################################################

# A private hosted zone in the VPC (needs enableDnsSupport and enableDnsHostnames on the VPC).
resource "aws_service_discovery_private_dns_namespace" "this" {
  count = local.cloud_map ? 1 : 0

  name        = local.cloud_map_namespace
  description = "Shoal ${var.name}: gossip SRV records of the tasks"
  vpc         = var.vpc_id
  tags        = local.tags
}

# gossip.<namespace>: one SRV record per task (its IP and gossip port). Multivalue answers
# carry up to eight healthy records, enough for a joining node: gossip spreads the rest.
resource "aws_service_discovery_service" "gossip" {
  count = local.cloud_map ? 1 : 0

  name        = "gossip"
  description = "Gossip addresses of the Shoal ${var.name} tasks"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this[0].id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "SRV"
      # Nodes poll every 10 s (discovery.interval); a longer TTL would only delay joins.
      ttl = 10
    }
  }

  # No health check configuration: Cloud Map answers with every registered task, the way the
  # Helm chart's headless Service publishes pods that are not ready yet. A starting node must be
  # found before it is ready, because its readiness waits for its first join. ECS deregisters a
  # task when it stops, and replaces a task whose container health check (/health) fails.

  tags = local.tags
}

################################################################################
# ECS
################################################################################

resource "aws_ecs_cluster" "this" {
  count = local.create_cluster ? 1 : 0

  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The root filesystem is read-only: the data directory is this volume, task-local storage
  # by default or EFS when enabled.
  volume {
    name = "data"

    dynamic "efs_volume_configuration" {
      for_each = var.enable_efs ? [1] : []
      content {
        file_system_id     = aws_efs_file_system.this[0].id
        transit_encryption = "ENABLED"

        authorization_config {
          access_point_id = aws_efs_access_point.this[0].id
          # Access is controlled by the access point and the security group, which keeps the
          # task role down to the two discovery actions.
          iam = "DISABLED"
        }
      }
    }
  }

  tags = local.tags
}

resource "aws_ecs_service" "this" {
  name             = var.name
  cluster          = local.cluster_arn
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # A new task must be ready (joined, config loaded) before an old one stops: capacity never
  # drops during a deployment, and a deployment that cannot become healthy rolls back.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Fargate spreads tasks over the subnets' zones; rebalancing restores the spread after a
  # zone comes back.
  availability_zone_rebalancing = "ENABLED"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  # ECS registers each task's IP and gossip port in Cloud Map and deregisters it when the task
  # stops.
  dynamic "service_registries" {
    for_each = local.cloud_map ? [1] : []
    content {
      registry_arn   = aws_service_discovery_service.gossip[0].arn
      container_name = local.container_name
      container_port = var.gossip_port
    }
  }

  # The HTTP port goes into the admin ALB's target group only; the data-plane ALB's target
  # groups hold the resource ports.
  load_balancer {
    target_group_arn = aws_lb_target_group.http.arn
    container_name   = local.container_name
    container_port   = var.http_port
  }

  dynamic "load_balancer" {
    for_each = local.data_plane_ports
    content {
      target_group_arn = aws_lb_target_group.data_plane[load_balancer.key].arn
      container_name   = local.container_name
      container_port   = load_balancer.value
    }
  }

  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true
  enable_execute_command  = false
  tags                    = local.tags

  lifecycle {
    precondition {
      condition     = length(local.private_azs) >= 2
      error_message = "private_subnet_ids must span at least two availability zones; they are all in ${join(", ", local.private_azs)}."
    }
  }

  # A target group must belong to a load balancer before a service can register into it.
  depends_on = [aws_lb_listener.admin, aws_lb_listener.data_plane, aws_iam_role_policy.execution]
}

################################################################################
# Optional RDS PostgreSQL
################################################################################

resource "random_password" "rds" {
  count = var.create_rds ? 1 : 0

  length = 40
  # Letters and digits only: the password goes into a URL without escaping.
  special = false
}

resource "aws_db_subnet_group" "this" {
  count = var.create_rds ? 1 : 0

  name_prefix = "${var.name}-"
  description = "Shoal ${var.name} control plane"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "rds" {
  count = var.create_rds ? 1 : 0

  name_prefix = "${var.name}-rds-"
  description = "Shoal ${var.name} PostgreSQL"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-rds" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "rds_from_tasks" {
  count = var.create_rds ? 1 : 0

  security_group_id            = aws_security_group.rds[0].id
  description                  = "PostgreSQL from Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}

resource "aws_db_parameter_group" "this" {
  count = var.create_rds ? 1 : 0

  name_prefix = "${var.name}-"
  family      = "postgres15"
  description = "Shoal ${var.name}: TLS required, slow and DDL statements logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.create_rds ? 1 : 0

  name_prefix        = "${var.name}-rds-mon-"
  description        = "RDS enhanced monitoring of the Shoal ${var.name} database"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.create_rds ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  count = var.create_rds ? 1 : 0

  identifier_prefix     = "${var.name}-"
  engine                = "postgres"
  engine_version        = var.rds.engine_version
  instance_class        = var.rds.instance_class
  allocated_storage     = var.rds.allocated_storage
  max_allocated_storage = var.rds.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = local.kms_key_arn

  db_name  = "shoal"
  username = "shoal"
  password = random_password.rds[0].result

  db_subnet_group_name   = aws_db_subnet_group.this[0].name
  vpc_security_group_ids = [aws_security_group.rds[0].id]
  publicly_accessible    = false
  multi_az               = var.rds.multi_az
  parameter_group_name   = aws_db_parameter_group.this[0].name

  deletion_protection       = var.rds.deletion_protection
  backup_retention_period   = var.rds.backup_retention_days
  skip_final_snapshot       = var.rds.skip_final_snapshot
  final_snapshot_identifier = "${var.name}-shoal-final"
  copy_tags_to_snapshot     = true

  auto_minor_version_upgrade            = true
  iam_database_authentication_enabled   = true
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = local.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring[0].arn

  tags = local.tags
}

################################################################################
# Optional EFS for the data directory (audit spool, config snapshot)
################################################################################

resource "aws_efs_file_system" "this" {
  count = var.enable_efs ? 1 : 0

  creation_token   = "${var.name}-shoal-data"
  encrypted        = true
  kms_key_id       = local.kms_key_arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"
  tags             = merge(local.tags, { Name = "${var.name}-shoal-data" })
}

resource "aws_efs_backup_policy" "this" {
  count = var.enable_efs ? 1 : 0

  file_system_id = aws_efs_file_system.this[0].id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_security_group" "efs" {
  count = var.enable_efs ? 1 : 0

  name_prefix = "${var.name}-efs-"
  description = "Shoal ${var.name} data directory (EFS)"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-efs" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_tasks" {
  count = var.enable_efs ? 1 : 0

  security_group_id            = aws_security_group.efs[0].id
  description                  = "NFS from Shoal tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = 2049
  to_port                      = 2049
  ip_protocol                  = "tcp"
}

resource "aws_efs_mount_target" "this" {
  for_each = var.enable_efs ? toset(var.private_subnet_ids) : toset([])

  file_system_id  = aws_efs_file_system.this[0].id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs[0].id]
}

# Every task sees the same directory, owned by the image's user, whatever uid NFS reports.
resource "aws_efs_access_point" "this" {
  count = var.enable_efs ? 1 : 0

  file_system_id = aws_efs_file_system.this[0].id

  posix_user {
    uid = 10001
    gid = 10001
  }

  root_directory {
    path = "/shoal"

    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }

  tags = local.tags
}
