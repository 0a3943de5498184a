variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for the artifacts bucket (the kms module's)."
  type        = string
}

variable "thing_names" {
  description = "Things (rigs) that join the rollout group: model jobs target the group, not single rigs."
  type        = list(string)
  default     = []
}

variable "presign_expiry_s" {
  description = "Longest lifetime of a presigned URL IoT Jobs hands a rig (battery-twin model publish --expires-s)."
  type        = number
  default     = 3600
}

variable "force_destroy" {
  description = "Let terraform destroy a bucket that still holds objects (demo stacks only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
