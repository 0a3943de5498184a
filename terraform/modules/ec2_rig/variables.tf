# Every value here ends up in the instance's cloud-init (run as root) or in an IAM policy, so each one is checked
# against the narrowest form it can take. bootstrap.sh checks the same forms again on the instance.
variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "name_prefix: 3-31 of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "rig" {
  description = "Rig id of the simulated rig: its IoT thing name (create the thing with the iot module)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9:_-]{1,128}$", var.rig))
    error_message = "rig: an AWS IoT thing name, 1-128 of letters, digits, ':', '_' and '-'."
  }
}

variable "vpc_id" {
  description = "VPC of the instance."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id: a VPC id (vpc- and 8 or 17 hex digits)."
  }
}

variable "subnet_id" {
  description = "Subnet of the instance. It needs a way out to the internet (packages, IoT Core, SSM): a public subnet with associate_public_ip = true, or a private one behind NAT."
  type        = string

  validation {
    condition     = can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id: a subnet id (subnet- and 8 or 17 hex digits)."
  }
}

variable "associate_public_ip" {
  description = "Give the instance a public IPv4 address for egress (no inbound rule exists either way)."
  type        = bool
  default     = false

  validation {
    condition     = var.associate_public_ip != null
    error_message = "associate_public_ip: true or false."
  }
}

variable "instance_type" {
  description = "Instance type. The simulated rig and the agent fit in 2 GB."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type: an EC2 instance type such as t3.small."
  }
}

variable "ami_id" {
  description = "AMI (Ubuntu 24.04, x86_64). Empty: the current one from Canonical's public SSM parameter."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(ami-[0-9a-f]{8,17})?$", var.ami_id))
    error_message = "ami_id: empty or an AMI id (ami- and 8 or 17 hex digits)."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the root volume and the SSM parameters."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$", var.kms_key_arn))
    error_message = "kms_key_arn: the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/UUID)."
  }
}

variable "kms_key_alias" {
  description = "Alias of that key (alias/NAME): the instance names the key by it when it posts its CSR, so the cloud-init is known at plan time."
  type        = string

  validation {
    condition     = can(regex("^alias/[A-Za-z0-9/_-]{1,250}$", var.kms_key_alias))
    error_message = "kms_key_alias: alias/ followed by letters, digits, '/', '_' and '-'."
  }
}

variable "iot_endpoint" {
  description = "IoT Core ATS endpoint (iot module output)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+(-ats)?\\.iot\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$", var.iot_endpoint))
    error_message = "iot_endpoint: an IoT Core data endpoint such as abc123-ats.iot.eu-west-1.amazonaws.com."
  }
}

variable "topic_prefix" {
  description = "MQTT topic prefix (agent config uplink.topic_prefix): 1-6 levels, no wildcard (a '+', '#', '*' or '?' would widen the IoT policy)."
  type        = string
  default     = "dt/battery-twin"

  validation {
    condition     = length(var.topic_prefix) <= 96 && can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,5}$", var.topic_prefix))
    error_message = "topic_prefix: 1-6 levels of letters, digits, '_' and '-' joined by '/', at most 96 characters; no MQTT or policy wildcard (+ # * ?), no empty level."
  }
}

variable "basic_ingest_rule" {
  description = "Telemetry rule for Basic Ingest (agent config uplink.basic_ingest_rule); empty to publish through the broker."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{0,128}$", var.basic_ingest_rule))
    error_message = "basic_ingest_rule: empty or an IoT rule name (letters, digits, '_')."
  }
}

variable "certificate_issued" {
  description = "Whether the iot module has issued this rig's certificate yet (false on the first apply, before the instance has posted its CSR)."
  type        = bool
  default     = false

  validation {
    condition     = var.certificate_issued != null
    error_message = "certificate_issued: true or false."
  }
}

variable "certificate_pem" {
  description = "This rig's certificate once issued (iot module output certificate_pems[rig])."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.certificate_pem == null || can(regex("^-----BEGIN CERTIFICATE-----\\n[A-Za-z0-9+/=\\n]+-----END CERTIFICATE-----\\n?$", var.certificate_pem))
    error_message = "certificate_pem: null or one PEM certificate."
  }
}

variable "agent_repo_url" {
  description = "Git repository (HTTPS) the instance installs battery-twin from."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+-]+)+/?$", var.agent_repo_url))
    error_message = "agent_repo_url: the HTTPS URL of the battery-twin repository (https://host/path, no credentials, query or spaces)."
  }
}

variable "agent_ref" {
  description = "What the instance installs: a full 40-hex commit id, or a release tag such as v1.2.3 (fetched as refs/tags/<tag>, so a branch name fails). Never a branch: whoever can push to it would choose what runs as root on the instance."
  type        = string

  validation {
    condition     = can(regex("^([0-9a-f]{40}|v?[0-9]+(\\.[0-9]+){1,3}([-+][0-9A-Za-z.-]{1,32})?)$", var.agent_ref))
    error_message = "agent_ref: a full 40-hex commit id or a version tag such as v1.2.3 (not a branch such as main)."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.tags : can(regex("^[\\p{L}\\p{N} _.:/=+@-]{1,128}$", k)) && can(regex("^[\\p{L}\\p{N} _.:/=+@-]{0,256}$", v))
    ])
    error_message = "tags: keys of 1-128 and values of 0-256 letters, digits, spaces and _ . : / = + - @ (AWS's tag alphabet)."
  }
}
