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
  description = "Rig ids (IoT thing names) of the physical rigs."
  type        = list(string)
  default     = ["rig-01"]
}

variable "csr_dir" {
  description = "Folder with <rig>.csr.pem for each rig, made on the devices by `battery-twin provision csr`. A rig without its CSR there gets a thing but no certificate yet."
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

variable "vpc_cidr" {
  description = "CIDR of the VPC this example makes for Redshift, QuickSight and the simulated rig."
  type        = string
  default     = "10.42.0.0/16"
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

variable "redshift_refresh_minutes" {
  description = "Minutes between refreshes of the warehouse's landing view; 0 for AUTO REFRESH (seconds behind, workgroup busy around the clock)."
  type        = number
  default     = 15
}

variable "redshift_max_capacity" {
  description = "Ceiling on Redshift Serverless RPUs."
  type        = number
  default     = 32
}

variable "ec2_rig" {
  description = "Run a simulated rig on EC2 as a rig of its own (its key and CSR are made on the instance; see terraform/README.md for the two applies)."
  type        = bool
  default     = true
}

variable "ec2_rig_name" {
  description = "Rig id of the EC2 simulated rig."
  type        = string
  default     = "sim-rig-ec2"
}

variable "ec2_ami_id" {
  description = "AMI for the simulated rig (Ubuntu 24.04 x86_64); empty: Canonical's current one."
  type        = string
  default     = ""
}

variable "agent_repo_url" {
  description = "Git repository (HTTPS) the simulated rig installs battery-twin from; required with ec2_rig."
  type        = string
  default     = ""
}

variable "agent_ref" {
  description = "What the simulated rig installs: a full 40-hex commit id or a release tag such as v1.2.3 (never a branch); required with ec2_rig."
  type        = string
  default     = ""
}

variable "quicksight" {
  description = "Create the QuickSight VPC connection, data source and data sets (needs a QuickSight Enterprise subscription in the account)."
  type        = bool
  default     = false
}

variable "quicksight_principal_arns" {
  description = "QuickSight users or groups that own the data source and data sets."
  type        = list(string)
  default     = []
}

variable "quicksight_secret_arn" {
  description = "Secret (username, password) QuickSight signs in to Redshift with; empty: the Redshift-managed admin secret. Use a read-only user in production (terraform/README.md)."
  type        = string
  default     = ""
}

variable "remote" {
  description = "Let the rigs take config through their named shadow \"config\" and model updates through IoT Jobs (agent [remote] shadow, jobs): the IoT policy then allows each thing its own shadow and jobs topics."
  type        = bool
  default     = false
}
