variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (with a route to AWS APIs through NAT or VPC endpoints) in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids must list at least two subnets in different availability zones."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets for the internet-facing load balancer, in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids must list at least two subnets in different availability zones."
  }
}

variable "image" {
  description = "Shoal image, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shoal@sha256:..."
  type        = string

  validation {
    condition     = length(var.image) > 0
    error_message = "image must not be empty."
  }
}

variable "ecr_repository_arn" {
  description = "ECR repository of the image."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", var.ecr_repository_arn))
    error_message = "ecr_repository_arn must be an ECR repository ARN."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the load balancer's HTTPS listeners."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "allowed_cidrs" {
  description = "Client networks allowed to reach the data-plane load balancer (not the console)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must list at least one valid CIDR block."
  }
}

variable "admin_cidrs" {
  description = "Operators' networks (a VPN range, say) allowed to reach the console and admin API on the internal admin load balancer."
  type        = list(string)
  default     = []
}

variable "admin_security_group_ids" {
  description = "Security groups of hosts operators reach the console from: a bastion, or an instance used for SSM port forwarding."
  type        = list(string)
  default     = []
}

variable "admin_certificate_arn" {
  description = "ACM certificate of the console's DNS name; null uses certificate_arn."
  type        = string
  default     = null
}

variable "global_psk_secret_arn" {
  description = "Secrets Manager secret holding the global cluster's keys, the same in every region (a replica of one secret); null deploys the regional cluster only."
  type        = string
  default     = null
}

variable "global_peers" {
  description = "host:port of global cluster nodes, in every region (the same list everywhere), e.g. DNS names with an A record per task."
  type        = list(string)
  default     = []
}

variable "global_cidrs" {
  description = "Task subnets of the other regions: they reach the global port, and global peers must be in them or in this region's subnets."
  type        = list(string)
  default     = []
}
