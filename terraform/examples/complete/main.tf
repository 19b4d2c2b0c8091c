# Every option of the module in use: an internet-facing data-plane ALB restricted to known
# networks with a port for an S3 resource, the console and admin API on the internal admin ALB
# open only to the operators' sources, a new RDS PostgreSQL, EFS for the data directories,
# Cloud Map discovery with a chosen namespace name, and optionally a global cluster beside the
# regional one.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "shoal"
      ManagedBy = "terraform"
    }
  }
}

module "shoal" {
  source = "../../modules/shoal-ecs"

  name = "shoal-demo"

  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  public_subnet_ids  = var.public_subnet_ids

  image               = var.image
  ecr_repository_arns = [var.ecr_repository_arn]
  desired_count       = 3
  cpu                 = 1024
  memory              = 2048

  # The data plane only: the console and admin API are never on this ALB.
  alb_internal      = false
  alb_ingress_cidrs = var.allowed_cidrs
  certificate_arn   = var.certificate_arn

  # An S3 resource stored with "port": 9000 is served on https://<alb>:9000.
  data_plane_ports = [9000]

  # The console and admin API: an internal ALB of their own, reachable only from these
  # sources (nobody when both are empty).
  admin_ingress_cidrs              = var.admin_cidrs
  admin_ingress_security_group_ids = var.admin_security_group_ids
  admin_certificate_arn            = var.admin_certificate_arn

  create_rds = true
  rds = {
    instance_class        = "db.t4g.medium"
    multi_az              = true
    deletion_protection   = true
    backup_retention_days = 7
  }

  enable_efs = true

  # Cloud Map SRV records (the default); "ecs" once the node has the ECS discovery provider.
  discovery_method         = "dns-srv"
  cloud_map_namespace_name = "shoal-demo.internal"

  # With global_psk_secret_arn: this region's cluster (eu-west, found through Cloud Map) and
  # a global one shared with the other regions on 7947, found through names they publish and
  # probed more slowly across the WAN.
  shoal_cluster_name = "eu-west"
  global_cluster = var.global_psk_secret_arn == null ? null : {
    name           = "global"
    port           = 7947
    psk_secret_arn = var.global_psk_secret_arn
    peers          = var.global_peers
    probe_interval        = "1s"
    probe_timeout         = "500ms"
    allowed_address_space = var.global_cidrs
    services = {
      counters        = "regional"
      cache           = "regional"
      events          = "global"
      global_counters = "global"
    }
  }
  global_cluster_ingress_cidrs = var.global_cidrs

  log_level          = "info"
  log_retention_days = 365

  tags = {
    Environment = "demo"
  }
}
