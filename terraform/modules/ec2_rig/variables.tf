variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "rig" {
  description = "Rig id of the simulated rig: its IoT thing name (create the thing with the iot module)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the instance."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the instance. It needs a way out to the internet (packages, IoT Core, SSM): a public subnet with associate_public_ip = true, or a private one behind NAT."
  type        = string
}

variable "associate_public_ip" {
  description = "Give the instance a public IPv4 address for egress (no inbound rule exists either way)."
  type        = bool
  default     = false
}

variable "instance_type" {
  description = "Instance type. The simulated rig and the agent fit in 2 GB."
  type        = string
  default     = "t3.small"
}

variable "ami_id" {
  description = "AMI (Ubuntu 24.04, x86_64). Empty: the current one from Canonical's public SSM parameter."
  type        = string
  default     = ""
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the root volume and the SSM parameters."
  type        = string
}

variable "kms_key_alias" {
  description = "Alias of that key (alias/NAME): the instance names the key by it when it posts its CSR, so the cloud-init is known at plan time."
  type        = string
}

variable "iot_endpoint" {
  description = "IoT Core ATS endpoint (iot module output)."
  type        = string
}

variable "topic_prefix" {
  description = "MQTT topic prefix (agent config uplink.topic_prefix)."
  type        = string
  default     = "dt/battery-twin"
}

variable "basic_ingest_rule" {
  description = "Telemetry rule for Basic Ingest (agent config uplink.basic_ingest_rule); empty to publish through the broker."
  type        = string
  default     = ""
}

variable "certificate_issued" {
  description = "Whether the iot module has issued this rig's certificate yet (false on the first apply, before the instance has posted its CSR)."
  type        = bool
  default     = false
}

variable "certificate_pem" {
  description = "This rig's certificate once issued (iot module output certificate_pems[rig])."
  type        = string
  default     = null
  sensitive   = true
}

variable "agent_repo_url" {
  description = "Git repository the instance installs battery-twin from."
  type        = string
}

variable "agent_ref" {
  description = "Branch or tag of that repository."
  type        = string
  default     = "main"
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
