variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\". Rule names use it with '-' turned into '_'."
  type        = string
}

variable "topic_prefix" {
  description = "MQTT topic prefix the agent publishes under (agent config uplink.topic_prefix): 1-6 levels, no wildcard (a '+', '#', '*' or '?' would widen the IoT policy and the rules)."
  type        = string
  default     = "dt/battery-twin"

  validation {
    condition     = length(var.topic_prefix) <= 96 && can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,5}$", var.topic_prefix))
    error_message = "topic_prefix: 1-6 levels of letters, digits, '_' and '-' joined by '/', at most 96 characters; no MQTT or policy wildcard (+ # * ?), no empty level."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the stream, the error bucket and the events log group."
  type        = string
}

variable "shard_count" {
  description = "Shards of the landing stream. One shard takes 1 MB/s and 1,000 records/s: about 30,000 cells at 1 Hz with the compact envelope and 15 KB messages."
  type        = number
  default     = 1
}

variable "stream_retention_hours" {
  description = "How long the landing stream keeps records (24-8760). The warehouse must refresh within this time or lose data; more than 24 h costs extra per shard-hour."
  type        = number
  default     = 24
}

variable "events_log_retention_days" {
  description = "Retention of the events log group, in days."
  type        = number
  default     = 365
}

variable "error_retention_days" {
  description = "Days a message that a rule action failed to deliver stays in the error bucket."
  type        = number
  default     = 90
}

variable "health_metric_namespace" {
  description = "CloudWatch namespace of the per-rig health metrics (named <rig>.<field>)."
  type        = string
  default     = "BatteryTwin/Rigs"
}

variable "health_metrics" {
  description = "Health fields also published as per-rig metrics <rig>.<field>, with their CloudWatch unit. Empty by default: each costs a custom metric per rig plus a PutMetricData request per health message (docs/cost-per-cell-month.md). The per-rig silent alarms (monitoring module, per_rig_silent_alarms) need readings_rate_s."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.health_metrics) == 0 || contains(keys(var.health_metrics), "readings_rate_s")
    error_message = "health_metrics, when set, must include readings_rate_s: the per-rig silent alarms read it."
  }
}

variable "health_log_retention_days" {
  description = "Retention of the health log group, in days (a few MB per rig and year)."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the error bucket with objects in it."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
