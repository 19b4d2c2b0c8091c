terraform {
  # 1.9: variable validations may refer to other variables (used for cross-field rules).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.82: aws_ecs_service.availability_zone_rebalancing.
      version = ">= 5.82.0, < 7.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }
}
