output "url" {
  description = "HTTPS URL of the console and admin API: the internal admin load balancer's DNS name, reachable only from admin_ingress_cidrs and admin_ingress_security_group_ids (point your own DNS name at it to match the certificate)."
  value       = "https://${aws_lb.admin.dns_name}"
}

output "admin_alb_arn" {
  description = "ARN of the admin load balancer (console, admin API, /ready, /metrics, /cluster/status)."
  value       = aws_lb.admin.arn
}

output "admin_alb_dns_name" {
  description = "DNS name of the admin load balancer (internal: resolves to private addresses)."
  value       = aws_lb.admin.dns_name
}

output "admin_alb_zone_id" {
  description = "Route 53 zone ID of the admin load balancer, for an alias record in a private hosted zone."
  value       = aws_lb.admin.zone_id
}

output "admin_alb_security_group_id" {
  description = "Security group of the admin load balancer (HTTPS from admin_ingress_cidrs and admin_ingress_security_group_ids only)."
  value       = aws_security_group.admin_alb.id
}

output "data_plane_urls" {
  description = "HTTPS endpoint of each data-plane port on the data-plane load balancer, by port; empty without data_plane_ports."
  value       = { for k, p in local.data_plane_ports : k => "https://${aws_lb.data_plane[0].dns_name}:${p}" }
}

output "alb_arn" {
  description = "ARN of the data-plane load balancer (to attach a WAF web ACL), or null without data_plane_ports."
  value       = one(aws_lb.data_plane[*].arn)
}

output "alb_dns_name" {
  description = "DNS name of the data-plane load balancer, or null without data_plane_ports."
  value       = one(aws_lb.data_plane[*].dns_name)
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the data-plane load balancer, for an alias record, or null without data_plane_ports."
  value       = one(aws_lb.data_plane[*].zone_id)
}

output "alb_security_group_id" {
  description = "Security group of the data-plane load balancer (its listeners from alb_ingress_cidrs only)."
  value       = aws_security_group.alb.id
}

output "tasks_security_group_id" {
  description = "Security group of the Shoal tasks (gossip open only within it; allow it on upstreams the nodes must reach)."
  value       = aws_security_group.tasks.id
}

output "task_role_arn" {
  description = "IAM role of the Shoal nodes: ecs:ListTasks and ecs:DescribeTasks on their own cluster only with discovery_method \"ecs\", no permission with \"dns-srv\"."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "IAM role ECS uses to start the tasks (image pull, logs, the three secrets)."
  value       = aws_iam_role.execution.arn
}

output "cluster_psk_secret_arn" {
  description = "Secrets Manager secret holding the cluster PSK."
  value       = local.cluster_psk_secret_arn
}

output "secrets_key_secret_arn" {
  description = "Secrets Manager secret holding the key that encrypts S3 credentials at rest."
  value       = local.secrets_key_secret_arn
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding the PostgreSQL URL."
  value       = local.database_url_secret_arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the secrets, logs, database and EFS."
  value       = local.kms_key_arn
}

output "ecs_cluster_arn" {
  description = "ECS cluster the service runs in."
  value       = local.cluster_arn
}

output "ecs_service_name" {
  description = "Name of the ECS service (for `aws ecs update-service --force-new-deployment` and discovery)."
  value       = aws_ecs_service.this.name
}

output "task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = aws_ecs_task_definition.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the nodes (JSON lines)."
  value       = aws_cloudwatch_log_group.this.name
}

output "rds_endpoint" {
  description = "Address:port of the RDS instance, or null without create_rds."
  value       = var.create_rds ? "${aws_db_instance.this[0].address}:${aws_db_instance.this[0].port}" : null
}

output "rds_security_group_id" {
  description = "Security group of the RDS instance, or null without create_rds."
  value       = var.create_rds ? aws_security_group.rds[0].id : null
}

output "efs_file_system_id" {
  description = "EFS file system holding the nodes' data directories, or null without enable_efs."
  value       = var.enable_efs ? aws_efs_file_system.this[0].id : null
}

output "discovery_srv_name" {
  description = "DNS SRV name the nodes query (SHOAL_DISCOVERY_DNS_SRV), or null with discovery_method \"ecs\". `dig SRV <name>` from inside the VPC lists the registered tasks."
  value       = local.cloud_map ? local.discovery_srv_name : null
}

output "cloud_map_namespace_id" {
  description = "ID of the Cloud Map private DNS namespace, or null with discovery_method \"ecs\"."
  value       = local.cloud_map ? aws_service_discovery_private_dns_namespace.this[0].id : null
}
