variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix for every resource name (lower case, digits and '-')."
  type        = string
  default     = "battery-twin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "name_prefix: 3-31 of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "rigs" {
  description = "Rig ids (IoT thing names)."
  type        = list(string)
}

variable "csr_dir" {
  description = "Folder with <rig>.csr.pem for each rig (made on the devices by `battery-twin provision csr`)."
  type        = string
  default     = "csr"
}

variable "basic_ingest" {
  description = "Rigs publish telemetry and health through Basic Ingest (no IoT Core messaging charge for either)."
  type        = bool
  default     = true
}

variable "per_rig_silent_alarms" {
  description = "Besides the fleet alarm rigs-silent, one silent alarm per rig (costs per rig: a custom metric, an alarm and a PutMetricData request per health heartbeat; docs/cost-per-cell-month.md)."
  type        = bool
  default     = false
}

variable "alarm_emails" {
  description = "E-mail addresses for alarms."
  type        = list(string)
  default     = []
}

variable "vpc_id" {
  description = "Existing VPC for the warehouse."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of that VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in three availability zones for Redshift Serverless."
  type        = list(string)
}

variable "enhanced_vpc_routing" {
  description = "Route Redshift's traffic through the VPC; the VPC then needs a Kinesis interface endpoint (or NAT)."
  type        = bool
  default     = false
}

variable "redshift_client_security_group_ids" {
  description = "Security groups allowed to query Redshift (e.g. a bastion's, or QuickSight's VPC connection's)."
  type        = list(string)
  default     = []
}

variable "redshift_refresh_minutes" {
  description = "Minutes between refreshes of the warehouse's landing view; 0 for AUTO REFRESH."
  type        = number
  default     = 15
}

variable "remote" {
  description = "Let the rigs take config through their named shadow \"config\" and model updates through IoT Jobs (agent [remote] shadow, jobs): the IoT policy then allows each thing its own shadow and jobs topics, and an artifacts bucket for signed models is made (docs/ota.md)."
  type        = bool
  default     = false
}
