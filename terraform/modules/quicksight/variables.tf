variable "name_prefix" {
  description = "Prefix for resource names and ids, e.g. \"battery-twin\"."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the Redshift workgroup."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for QuickSight's network interfaces (same VPC as the workgroup)."
  type        = list(string)
}

variable "redshift_security_group_id" {
  description = "Security group of the workgroup; this module lets QuickSight's interfaces in on the Redshift port."
  type        = string
}

variable "redshift_host" {
  description = "Private endpoint address of the workgroup."
  type        = string
}

variable "redshift_port" {
  description = "Port of the workgroup."
  type        = number
  default     = 5439
}

variable "database" {
  description = "Database with the views."
  type        = string
}

variable "schema" {
  description = "Schema with the qs_* views (cloud/sql/03_views.sql)."
  type        = string
}

variable "credentials_secret_arn" {
  description = "Secrets Manager secret (JSON with username and password) QuickSight signs in with. Use a read-only user's secret in production (terraform/README.md shows how to make one)."
  type        = string
}

variable "principal_arns" {
  description = "QuickSight users or groups (arn:aws:quicksight:REGION:ACCOUNT:user/default/NAME) that own the data source and data sets."
  type        = list(string)
  default     = []
}

variable "import_mode" {
  description = "DIRECT_QUERY reads Redshift on every visual (fresh, wakes the warehouse); SPICE imports (needs SPICE capacity and a refresh schedule)."
  type        = string
  default     = "DIRECT_QUERY"

  validation {
    condition     = contains(["DIRECT_QUERY", "SPICE"], var.import_mode)
    error_message = "import_mode is DIRECT_QUERY or SPICE."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
