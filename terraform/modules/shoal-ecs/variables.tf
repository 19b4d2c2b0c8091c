################################################################################
# Naming
################################################################################

variable "name" {
  description = "Name of the deployment; prefixes every resource (ECS service, ALB, target groups, secrets, log group)."
  type        = string

  validation {
    # Target group names are at most 32 characters and get a "-dp-<port>" suffix.
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name))
    error_message = "name must be 2-20 characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource that supports them."
  type        = map(string)
  default     = {}
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "ID of the VPC the tasks, load balancers and optional database run in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks (and of the database and EFS mount targets), in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must list at least two subnet IDs (subnet-...) in different availability zones, so the service survives the loss of a zone."
  }
}

variable "public_subnet_ids" {
  description = "Subnets of the data-plane load balancer (public ones for an internet-facing ALB, private ones when alb_internal is true), in at least two availability zones. The admin load balancer uses admin_subnet_ids."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must list at least two subnet IDs (subnet-...) in different availability zones (an ALB requires two)."
  }
}

variable "alb_internal" {
  description = "Make the data-plane load balancer internal (reachable only from the VPC and connected networks). It carries only the data-plane ports, never the console or admin API (those are on the admin load balancer, always internal), so false is safe when clients are on the internet; internal stays the default."
  type        = bool
  default     = true
}

variable "alb_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the data-plane load balancer's listeners (the data_plane_ports). They do not reach the console or admin API: see admin_ingress_cidrs."
  type        = list(string)

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "alb_ingress_cidrs must list at least one valid IPv4 CIDR block such as 10.0.0.0/8."
  }
}

variable "admin_subnet_ids" {
  description = "Subnets of the admin load balancer (console, admin API, /ready, /metrics, /cluster/status), in at least two availability zones; null uses private_subnet_ids. It is always internal, whatever subnets it is given."
  type        = list(string)
  default     = null

  validation {
    condition     = var.admin_subnet_ids == null || try(length(var.admin_subnet_ids) >= 2 && alltrue([for s in var.admin_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))]), false)
    error_message = "admin_subnet_ids must be null (use private_subnet_ids) or list at least two subnet IDs (subnet-...) in different availability zones (an ALB requires two)."
  }
}

variable "admin_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the admin load balancer (HTTPS on 443: console, admin API, /ready, /metrics, /cluster/status), such as an operators' VPN range. Empty (the default) with admin_ingress_security_group_ids empty admits nobody until you allow a source."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_ingress_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "admin_ingress_cidrs must hold valid IPv4 CIDR blocks such as 10.20.0.0/16 (the operators' networks)."
  }

  validation {
    condition     = alltrue([for c in var.admin_ingress_cidrs : try(tonumber(split("/", c)[1]) >= 8, true)])
    error_message = "admin_ingress_cidrs must not hold blocks wider than /8 (such as 0.0.0.0/0): the console and admin API are for operators; list their networks, or use admin_ingress_security_group_ids."
  }
}

variable "admin_ingress_security_group_ids" {
  description = "Security groups allowed to reach the admin load balancer (HTTPS on 443), such as a bastion's or an SSM port-forwarding host's. Empty (the default) with admin_ingress_cidrs empty admits nobody until you allow a source."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.admin_ingress_security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", g))])
    error_message = "admin_ingress_security_group_ids must hold security group IDs such as sg-0123456789abcdef0."
  }
}

variable "task_egress_cidrs" {
  description = "CIDR blocks the tasks may open TCP connections to: PostgreSQL, AWS APIs (Secrets Manager, ECS, ECR, CloudWatch Logs) and the upstreams of protected resources."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.task_egress_cidrs) > 0 && alltrue([for c in var.task_egress_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "task_egress_cidrs must list at least one valid IPv4 CIDR block; the tasks need to reach AWS APIs and PostgreSQL."
  }
}

################################################################################
# Load balancers
################################################################################

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listeners of the data-plane ports, and of the admin load balancer unless admin_certificate_arn is set. There is no plain HTTP listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "admin_certificate_arn" {
  description = "ACM certificate of the admin load balancer's HTTPS listener (the console's DNS name); null uses certificate_arn."
  type        = string
  default     = null

  validation {
    condition     = var.admin_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.admin_certificate_arn))
    error_message = "admin_certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID) or null."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listeners."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = startswith(var.ssl_policy, "ELBSecurityPolicy-")
    error_message = "ssl_policy must be an ELB security policy name (ELBSecurityPolicy-...)."
  }
}

variable "alb_deletion_protection" {
  description = "Refuse to delete the load balancers (data plane and admin) until this is turned off (guards them against an accidental destroy)."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "S3 bucket for the access logs of both load balancers (prefixed with name, and name-admin for the admin one; the bucket policy must allow the ELB log delivery); null disables access logs."
  type        = string
  default     = null

  validation {
    condition     = var.alb_access_logs_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.alb_access_logs_bucket))
    error_message = "alb_access_logs_bucket must be a valid S3 bucket name or null."
  }
}

################################################################################
# Service and task
################################################################################

variable "image" {
  description = "Container image of the Shoal node, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shoal:0.1.0 (a digest is better than a tag)."
  type        = string

  validation {
    condition     = length(var.image) > 0 && !can(regex("\\s", var.image))
    error_message = "image must be a non-empty image reference without spaces."
  }
}

variable "ecr_repository_arns" {
  description = "ECR repositories the execution role may pull from; empty grants no ECR access (for public images)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.ecr_repository_arns : can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", r))])
    error_message = "ecr_repository_arns must hold ECR repository ARNs (arn:aws:ecr:REGION:ACCOUNT:repository/NAME)."
  }
}

variable "desired_count" {
  description = "Number of Shoal tasks. At least 3, so that one task can fail (or be replaced during a deployment) while the others still form a cluster across zones."
  type        = number
  default     = 3

  validation {
    condition     = var.desired_count >= 3 && var.desired_count == floor(var.desired_count) && var.desired_count <= 100
    error_message = "desired_count must be a whole number between 3 and 100: fewer than 3 nodes cannot lose one and keep sharing counts across zones."
  }
}

variable "cpu" {
  description = "Task CPU units (Fargate: 256, 512, 1024, 2048, 4096, 8192 or 16384)."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Task memory in MiB; must be a Fargate combination with cpu (e.g. 1024 CPU: 2048-8192 MiB)."
  type        = number
  default     = 2048

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880 && var.memory == floor(var.memory)
    error_message = "memory must be a whole number of MiB between 512 and 122880."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the tasks; the image must be built for it."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "http_port" {
  description = "Container port of health, readiness, cluster status, metrics, admin API and console: behind the admin load balancer only."
  type        = number
  default     = 8080

  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535 && var.http_port == floor(var.http_port)
    error_message = "http_port must be a port between 1024 and 65535 (the container runs without privileges)."
  }
}

variable "gossip_port" {
  description = "Gossip port, TCP and UDP, open only between the tasks."
  type        = number
  default     = 7946

  validation {
    condition     = var.gossip_port >= 1024 && var.gossip_port <= 65535 && var.gossip_port == floor(var.gossip_port) && var.gossip_port != var.http_port
    error_message = "gossip_port must be a port between 1024 and 65535, different from http_port."
  }
}

variable "data_plane_ports" {
  description = "Data-plane ports: the `port` of each resource stored in PostgreSQL. Each gets a container port, a target group and an HTTPS listener on the same port of the data-plane load balancer; empty creates no data-plane load balancer."
  type        = list(number)
  default     = []

  validation {
    condition = alltrue([
      for p in var.data_plane_ports : p >= 1024 && p <= 65535 && p == floor(p) && p != var.http_port && p != var.gossip_port && p != 443 && p != 80
    ]) && length(distinct(var.data_plane_ports)) == length(var.data_plane_ports)
    error_message = "data_plane_ports must be distinct ports between 1024 and 65535, different from http_port and gossip_port."
  }
}

variable "shoal_cluster_name" {
  description = "Cluster label (SHOAL_CLUSTER_NAME), authenticated in every gossip packet so two clusters on one network never merge."
  type        = string
  default     = "shoal"

  validation {
    condition     = length(var.shoal_cluster_name) >= 1 && length(var.shoal_cluster_name) <= 64
    error_message = "shoal_cluster_name must be 1-64 characters."
  }
}

variable "discovery_method" {
  description = "How the tasks find each other: \"dns-srv\" (ECS registers every task in a Cloud Map private DNS namespace and the nodes poll its SRV records; works with every Shoal release; the task role gets no permission) or \"ecs\" (the node lists the service's tasks with ecs:ListTasks and ecs:DescribeTasks; planned in the node, issue 8: a node without that provider runs alone)."
  type        = string
  default     = "dns-srv"

  validation {
    condition     = contains(["dns-srv", "ecs"], var.discovery_method)
    error_message = "discovery_method must be \"dns-srv\" (Cloud Map SRV records) or \"ecs\" (the ECS API, once the node has that provider)."
  }
}

variable "cloud_map_namespace_name" {
  description = "Name of the Cloud Map private DNS namespace created for discovery_method \"dns-srv\" (the nodes query gossip.<name>); null uses \"<name>.shoal.internal\". Must not clash with a private hosted zone already associated with the VPC."
  type        = string
  default     = null

  validation {
    condition     = var.cloud_map_namespace_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.cloud_map_namespace_name))
    error_message = "cloud_map_namespace_name must be a lowercase DNS name with at least two labels, such as shoal.internal, or null."
  }
}

variable "global_cluster" {
  description = "A second gossip cluster spanning every region, beside this region's own (shoal_cluster_name on gossip_port); null keeps the single cluster. The tasks then get a config file with one [[clusters]] entry per cluster and a [services] mapping (SHOAL_ECS_CONFIG_TOML, written by the image's ECS entrypoint), the global port TCP and UDP, and the global keys as SHOAL_CLUSTERS_<NAME>_PSK. name: the same in every region. port: its gossip port. psk_secret_arn: a Secrets Manager secret holding the global keys, the same in every region (a replica) and none of the regional ones; psk_kms_key_arn: its KMS key when that is not kms_key_arn. discovery_method: \"static\" (peers, host:port of nodes in every region) or \"dns-srv\" (dns_srv_name). probe_interval and probe_timeout: slower failure detection across a WAN. allowed_address_space: CIDR blocks global peers must fall in (this region's private subnets are added; empty accepts all). services: \"regional\" or \"global\" for counters, cache, events and global_counters."
  type = object({
    name                  = optional(string, "global")
    port                  = optional(number, 7947)
    psk_secret_arn        = string
    psk_kms_key_arn       = optional(string)
    discovery_method      = optional(string, "static")
    peers                 = optional(list(string), [])
    dns_srv_name          = optional(string)
    probe_interval        = optional(string, "1s")
    probe_timeout         = optional(string, "500ms")
    allowed_address_space = optional(list(string), [])
    services = optional(object({
      counters        = optional(string, "regional")
      cache           = optional(string, "regional")
      events          = optional(string, "global")
      global_counters = optional(string, "global")
    }), {})
  })
  default = null

  validation {
    condition     = var.global_cluster == null || try(var.global_cluster.port >= 1024 && var.global_cluster.port <= 65535 && var.global_cluster.port == floor(var.global_cluster.port), false)
    error_message = "global_cluster.port must be a port between 1024 and 65535 (the container runs without privileges)."
  }

  validation {
    condition     = var.global_cluster == null || try(var.global_cluster.port != var.gossip_port, false)
    error_message = "global_cluster.port must differ from gossip_port: each cluster needs a gossip port of its own."
  }

  validation {
    condition     = var.global_cluster == null || try(var.global_cluster.port != var.http_port && !contains(var.data_plane_ports, var.global_cluster.port), false)
    error_message = "global_cluster.port must differ from http_port (the node refuses a gossip port equal to the admin port) and from every data_plane_ports entry."
  }

  validation {
    condition     = var.global_cluster == null || try(can(regex("^[a-z0-9][a-z0-9-]{0,63}$", var.global_cluster.name)) && can(regex("^[a-z0-9][a-z0-9-]{0,63}$", var.shoal_cluster_name)) && var.global_cluster.name != var.shoal_cluster_name, false)
    error_message = "global_cluster.name and shoal_cluster_name must each be 1-64 lower-case letters, digits or '-' (not first), and differ: they name the two [[clusters]] entries and their SHOAL_CLUSTERS_<NAME>_* variables."
  }

  validation {
    condition     = var.global_cluster == null || try(can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.global_cluster.psk_secret_arn)) && var.global_cluster.psk_secret_arn != var.cluster_psk_secret_arn, false)
    error_message = "global_cluster.psk_secret_arn must be a Secrets Manager secret ARN other than cluster_psk_secret_arn: each cluster needs keys of its own, and the global ones must be the same in every region, so they are never generated."
  }

  validation {
    condition     = var.global_cluster == null || try(var.global_cluster.psk_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.global_cluster.psk_kms_key_arn)), false)
    error_message = "global_cluster.psk_kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or null."
  }

  validation {
    condition = var.global_cluster == null || try(
      var.global_cluster.discovery_method == "static" ? length(var.global_cluster.peers) > 0 && alltrue([for p in var.global_cluster.peers : can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}$", p))]) :
      var.global_cluster.discovery_method == "dns-srv" && can(regex("^[A-Za-z0-9_.-]{1,253}$", var.global_cluster.dns_srv_name)),
    false)
    error_message = "global_cluster.discovery_method must be \"static\" with peers listing host:port entries (nodes of every region), or \"dns-srv\" with dns_srv_name (an SRV name listing the global port of every region's nodes)."
  }

  validation {
    condition     = var.global_cluster == null || try(can(regex("^[0-9]+(ms|s|m)$", var.global_cluster.probe_interval)) && can(regex("^[0-9]+(ms|s|m)$", var.global_cluster.probe_timeout)), false)
    error_message = "global_cluster.probe_interval and probe_timeout must be durations such as \"1s\" or \"500ms\"; the node also wants the timeout shorter than the interval."
  }

  validation {
    condition     = var.global_cluster == null || try(alltrue([for c in var.global_cluster.allowed_address_space : can(cidrhost(c, 0))]), false)
    error_message = "global_cluster.allowed_address_space must hold valid CIDR blocks such as 10.2.0.0/16 (every region's task subnets)."
  }

  validation {
    condition     = var.global_cluster == null || try(alltrue([for s in [var.global_cluster.services.counters, var.global_cluster.services.cache, var.global_cluster.services.events, var.global_cluster.services.global_counters] : contains(["regional", "global"], s)]), false)
    error_message = "global_cluster.services entries (counters, cache, events, global_counters) must each be \"regional\" or \"global\"."
  }
}

variable "global_cluster_ingress_cidrs" {
  description = "CIDR blocks of the other regions' task subnets: they may reach the global cluster's port (TCP and UDP), and the tasks may reach them on it. This region's tasks always may. Unused without global_cluster."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.global_cluster_ingress_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "global_cluster_ingress_cidrs must hold valid IPv4 CIDR blocks such as 10.2.0.0/16 (the other regions' task subnets)."
  }

  validation {
    condition     = alltrue([for c in var.global_cluster_ingress_cidrs : try(tonumber(split("/", c)[1]) >= 8, true)])
    error_message = "global_cluster_ingress_cidrs must not hold blocks wider than /8 (such as 0.0.0.0/0): gossip is for the other regions' tasks only."
  }
}

variable "shutdown_grace_seconds" {
  description = "Seconds a stopping node waits for in-flight requests (SHOAL_HTTP_SHUTDOWN_GRACE). Also the target groups' deregistration delay; the container stop timeout is this plus 15 s."
  type        = number
  default     = 30

  validation {
    # Fargate caps a container's stopTimeout at 120 s.
    condition     = var.shutdown_grace_seconds >= 1 && var.shutdown_grace_seconds <= 100 && var.shutdown_grace_seconds == floor(var.shutdown_grace_seconds)
    error_message = "shutdown_grace_seconds must be a whole number between 1 and 100 (Fargate stops a container at most 120 s after SIGTERM)."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds ECS ignores failing load balancer health checks of a new task; covers the node's join timeout (30 s by default)."
  type        = number
  default     = 60

  validation {
    condition     = var.health_check_grace_period_seconds >= 0 && var.health_check_grace_period_seconds <= 600
    error_message = "health_check_grace_period_seconds must be between 0 and 600."
  }
}

variable "log_level" {
  description = "Node log level or tracing filter (SHOAL_LOG_LEVEL), e.g. \"info\" or \"info,shoal_cluster=debug\"."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^(error|warn|info|debug|trace)(,[a-z_:]+=(error|warn|info|debug|trace))*$", var.log_level))
    error_message = "log_level must be error, warn, info, debug or trace, optionally followed by per-module filters like \",shoal_cluster=debug\"."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group, in days."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "existing_cluster_arn" {
  description = "ARN of an existing ECS cluster to run in; null creates one."
  type        = string
  default     = null

  validation {
    condition     = var.existing_cluster_arn == null || can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]+$", var.existing_cluster_arn))
    error_message = "existing_cluster_arn must be an ECS cluster ARN (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME) or null."
  }
}

################################################################################
# Encryption and secrets
################################################################################

variable "kms_key_arn" {
  description = "KMS key encrypting the secrets, logs, database and EFS; null creates one with rotation. Existing secrets passed by ARN must use this key (or the AWS managed one)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or null."
  }
}

variable "cluster_psk_secret_arn" {
  description = "Existing Secrets Manager secret holding the cluster PSK (32 bytes as 64 hex characters; several keys separated by commas during a rotation); null generates one."
  type        = string
  default     = null

  validation {
    condition     = var.cluster_psk_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.cluster_psk_secret_arn))
    error_message = "cluster_psk_secret_arn must be a Secrets Manager secret ARN or null."
  }
}

variable "secrets_key_secret_arn" {
  description = "Existing Secrets Manager secret holding the key that encrypts S3 credentials at rest (32 bytes as hex); null generates one."
  type        = string
  default     = null

  validation {
    condition     = var.secrets_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.secrets_key_secret_arn))
    error_message = "secrets_key_secret_arn must be a Secrets Manager secret ARN or null."
  }
}

variable "database_url_secret_arn" {
  description = "Existing Secrets Manager secret holding the PostgreSQL URL. Give exactly one of database_url_secret_arn, database_url or create_rds."
  type        = string
  default     = null

  validation {
    condition     = var.database_url_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.database_url_secret_arn))
    error_message = "database_url_secret_arn must be a Secrets Manager secret ARN or null."
  }
}

variable "database_url" {
  description = "PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB) to store in a new secret. Give exactly one of database_url_secret_arn, database_url or create_rds. It lands in the Terraform state: protect the state."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.database_url == null || can(regex("^postgres(ql)?://[^\\s]+$", var.database_url))
    error_message = "database_url must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB) or null."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

################################################################################
# Optional PostgreSQL (RDS)
################################################################################

variable "create_rds" {
  description = "Create an encrypted, private RDS PostgreSQL instance and store its URL in the database URL secret."
  type        = bool
  default     = false

  validation {
    condition     = (var.create_rds ? 1 : 0) + (var.database_url != null ? 1 : 0) + (var.database_url_secret_arn != null ? 1 : 0) == 1
    error_message = "Give exactly one source for the database URL: create_rds = true, database_url, or database_url_secret_arn."
  }
}

variable "rds" {
  description = "Settings of the RDS instance when create_rds is true."
  type = object({
    instance_class        = optional(string, "db.t4g.medium")
    engine_version        = optional(string, "15")
    allocated_storage     = optional(number, 20)
    max_allocated_storage = optional(number, 100)
    multi_az              = optional(bool, true)
    deletion_protection   = optional(bool, true)
    backup_retention_days = optional(number, 7)
    skip_final_snapshot   = optional(bool, false)
  })
  default = {}

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.rds.instance_class))
    error_message = "rds.instance_class must be an RDS instance class such as db.t4g.medium."
  }

  validation {
    condition     = can(regex("^15(\\.[0-9]+)?$", var.rds.engine_version))
    error_message = "rds.engine_version must be PostgreSQL 15 (\"15\" or \"15.x\"), the version Shoal is tested with."
  }

  validation {
    condition     = var.rds.allocated_storage >= 20 && var.rds.allocated_storage <= 65536 && var.rds.max_allocated_storage >= var.rds.allocated_storage
    error_message = "rds.allocated_storage must be between 20 and 65536 GiB, and rds.max_allocated_storage at least as large."
  }

  validation {
    condition     = var.rds.backup_retention_days >= 1 && var.rds.backup_retention_days <= 35
    error_message = "rds.backup_retention_days must be between 1 and 35 (0 would disable backups of the control plane)."
  }
}

################################################################################
# Optional EFS for the data directory
################################################################################

variable "enable_efs" {
  description = "Mount an encrypted EFS file system at /var/lib/shoal (one subdirectory per task) so the audit spool and config snapshot outlive the task."
  type        = bool
  default     = false
}
