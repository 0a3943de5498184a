variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the workgroup."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of that VPC: the workgroup may reach HTTPS endpoints (the Kinesis interface endpoint) inside it."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the workgroup, in at least three availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 3
    error_message = "Redshift Serverless needs subnets in at least three availability zones."
  }
}

variable "egress_prefix_list_ids" {
  description = "Prefix lists the workgroup may reach on 443, e.g. the S3 gateway endpoint's."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the namespace, its admin secret and the stream it reads."
  type        = string
}

variable "stream_name" {
  description = "Kinesis landing stream (ingest module)."
  type        = string
}

variable "stream_arn" {
  description = "ARN of the landing stream."
  type        = string
}

variable "database" {
  description = "Database name."
  type        = string
  default     = "battery_twin"
}

variable "schema" {
  description = "Schema of the landing view and the typed views."
  type        = string
  default     = "battery_twin"
}

variable "kinesis_schema" {
  description = "External schema that maps the Kinesis stream."
  type        = string
  default     = "bt_kinesis"
}

variable "base_capacity" {
  description = "Base Redshift Processing Units: 4, or 8-512 in steps of 8. What each refresh and query costs scales with this (every wake-up bills at least 60 s of it); 4 RPU holds up to 32 TB of managed storage."
  type        = number
  default     = 8

  validation {
    condition     = var.base_capacity == 4 || (var.base_capacity >= 8 && var.base_capacity <= 512 && var.base_capacity % 8 == 0)
    error_message = "base_capacity is 4, or 8-512 in steps of 8 (Redshift Serverless)."
  }
}

variable "max_capacity" {
  description = "Ceiling on RPUs the workgroup may scale to; caps the bill."
  type        = number
  default     = 32
}

variable "enhanced_vpc_routing" {
  description = "Route the workgroup's traffic to AWS services through the VPC (needs the Kinesis interface endpoint there)."
  type        = bool
  default     = true
}

variable "refresh_minutes" {
  description = "How often the landing view takes in new stream records. 0: AUTO REFRESH (seconds behind, but a stream that never stops keeps the workgroup busy around the clock); N: a schedule refreshes it every N minutes, and the workgroup sleeps in between (docs/cost-per-cell-month.md compares them)."
  type        = number
  default     = 15

  validation {
    condition     = var.refresh_minutes == 0 || (var.refresh_minutes >= 1 && var.refresh_minutes <= 720)
    error_message = "refresh_minutes is 0 (auto refresh) or 1-720: the stream keeps records 24 h, refresh well within that."
  }
}

variable "sql_dir" {
  description = "Folder of the SQL templates 01_schemas.sql, 02_landing.sql, 03_views.sql (the repository's cloud/sql)."
  type        = string
  default     = null
}

variable "run_sql" {
  description = "Run the SQL through the Redshift Data API on apply (needs redshift-data and secretsmanager:GetSecretValue on the admin secret for whoever applies)."
  type        = bool
  default     = true
}

variable "network_ready" {
  description = "Ids of what the warehouse needs to reach Kinesis (e.g. the interface endpoint); the SQL runs after they exist."
  type        = list(string)
  default     = []
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect to the workgroup on its port (e.g. QuickSight's VPC connection)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
