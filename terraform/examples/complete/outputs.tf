output "url" {
  description = "Console and admin API URL (the internal admin load balancer)."
  value       = module.shoal.url
}

output "admin_alb_dns_name" {
  description = "DNS name of the internal admin load balancer (the host for SSM port forwarding)."
  value       = module.shoal.admin_alb_dns_name
}

output "data_plane_urls" {
  description = "HTTPS endpoint of each data-plane port, by port."
  value       = module.shoal.data_plane_urls
}

output "tasks_security_group_id" {
  description = "Security group of the Shoal tasks."
  value       = module.shoal.tasks_security_group_id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = module.shoal.alb_security_group_id
}

output "task_role_arn" {
  description = "IAM role of the Shoal nodes."
  value       = module.shoal.task_role_arn
}

output "execution_role_arn" {
  description = "IAM role that starts the tasks."
  value       = module.shoal.execution_role_arn
}

output "database_url_secret_arn" {
  description = "Secret holding the PostgreSQL URL (read it to run `shoal admin create` against the database)."
  value       = module.shoal.database_url_secret_arn
}

output "cluster_psk_secret_arn" {
  description = "Secret holding the cluster PSK."
  value       = module.shoal.cluster_psk_secret_arn
}

output "secrets_key_secret_arn" {
  description = "Secret holding the secrets-at-rest key."
  value       = module.shoal.secrets_key_secret_arn
}

output "log_group_name" {
  description = "CloudWatch log group of the nodes."
  value       = module.shoal.log_group_name
}

output "discovery_srv_name" {
  description = "SRV name the nodes query for their peers (`dig SRV <name>` from inside the VPC)."
  value       = module.shoal.discovery_srv_name
}

output "ecs_cluster_arn" {
  description = "ECS cluster of the service (for `aws ecs wait services-stable` and `aws ecs run-task`)."
  value       = module.shoal.ecs_cluster_arn
}

output "ecs_service_name" {
  description = "Name of the ECS service."
  value       = module.shoal.ecs_service_name
}

output "task_definition_arn" {
  description = "Current task definition revision (for one-off `aws ecs run-task` commands such as `shoal admin create`)."
  value       = module.shoal.task_definition_arn
}
