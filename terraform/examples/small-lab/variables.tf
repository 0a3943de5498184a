variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix for every resource name (lower case, digits and '-')."
  type        = string
  default     = "battery-lab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "name_prefix: 3-31 of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "rigs" {
  description = "Rig ids (IoT thing names). The example is sized for up to about 100 cells (a dozen rigs of 8)."
  type        = list(string)
  default     = ["rig-01"]

  validation {
    condition     = length(var.rigs) >= 1 && length(var.rigs) <= 25
    error_message = "small-lab: 1 to 25 rigs; a larger fleet wants examples/fleet (more refreshes, more capacity)."
  }
}

variable "csr_dir" {
  description = "Folder with <rig>.csr.pem for each rig, made on the devices by `battery-twin provision csr`."
  type        = string
  default     = "csr"
}

variable "alarm_emails" {
  description = "E-mail addresses for alarms."
  type        = list(string)
  default     = []
}

variable "per_rig_silent_alarms" {
  description = "Besides the fleet alarm rigs-silent, one silent alarm per rig (costs per rig: docs/cost-per-cell-month.md)."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR of the VPC this example makes for Redshift and QuickSight."
  type        = string
  default     = "10.43.0.0/16"
}

variable "availability_zones" {
  description = "Letters of the three availability zones of the private subnets (Redshift Serverless needs three)."
  type        = list(string)
  default     = ["a", "b", "c"]

  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "Give exactly three availability zones."
  }
}

variable "redshift_base_capacity" {
  description = "Base RPUs of the workgroup: 4 is the smallest (each refresh bills at least 60 s of it)."
  type        = number
  default     = 4
}

variable "redshift_max_capacity" {
  description = "Ceiling on RPUs (caps the bill of a heavy query)."
  type        = number
  default     = 8
}

variable "redshift_refresh_minutes" {
  description = "Minutes between refreshes of the landing view: readings reach Redshift within this (plus the agent's 2-minute linger). 60 costs about 9 USD/month more; 0 (AUTO REFRESH) about 1,100 more."
  type        = number
  default     = 120
}

variable "quicksight_principal_arns" {
  description = "QuickSight users or groups that own the data source and data sets (the account needs a QuickSight Enterprise subscription)."
  type        = list(string)
}

variable "quicksight_secret_arn" {
  description = "Secret (username, password) QuickSight signs in to Redshift with; empty: the Redshift-managed admin secret. Use a read-only user in production (terraform/README.md)."
  type        = string
  default     = ""
}

variable "remote" {
  description = "Let the rigs take config through their named shadow \"config\" and model updates through IoT Jobs (agent [remote] shadow, jobs): the IoT policy then allows each thing its own shadow and jobs topics, and an artifacts bucket for signed models is made (docs/ota.md)."
  type        = bool
  default     = false
}
