variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "rigs" {
  description = "Rig ids; each gets a \"rig silent\" alarm and a line on the dashboard."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the SNS topic."
  type        = string
}

variable "events_log_group_name" {
  description = "Log group with one log event per agent event (ingest module)."
  type        = string
}

variable "health_metric_namespace" {
  description = "Namespace of the per-rig health metrics <rig>.<field> (ingest module)."
  type        = string
}

variable "health_metric_fields" {
  description = "Health fields published as per-rig metrics (ingest module output health_metric_fields); one dashboard widget each."
  type        = list(string)
  default     = ["readings_rate_s"]
}

variable "stream_name" {
  description = "Kinesis landing stream, for the dashboard's ingestion widgets."
  type        = string
}

variable "error_bucket_name" {
  description = "Bucket of failed rule deliveries; a new object there sends a notification."
  type        = string
}

variable "event_metric_namespace" {
  description = "Namespace of the metrics counted from agent events."
  type        = string
  default     = "BatteryTwin/Events"
}

variable "cell_temperature_max_c" {
  description = "A validate.out_of_range event for temperature_c above this counts as over-temperature (besides alarm.over_temperature events)."
  type        = number
  default     = 60
}

variable "cell_voltage_max_v" {
  description = "A validate.out_of_range event for voltage_v above this counts as over-voltage (besides alarm.over_voltage events)."
  type        = number
  default     = 4.25
}

variable "cell_voltage_min_v" {
  description = "A validate.out_of_range event for voltage_v below this counts as under-voltage (besides alarm.under_voltage events)."
  type        = number
  default     = 2.5
}

variable "anomaly_threshold" {
  description = "Anomaly events across the fleet within anomaly_period_s that raise the anomaly alarm."
  type        = number
  default     = 5
}

variable "anomaly_period_s" {
  description = "Window of the anomaly count, in seconds (a multiple of 60)."
  type        = number
  default     = 300
}

variable "silent_minutes" {
  description = "Minutes without acknowledged readings (or without health messages at all) after which a rig counts as silent."
  type        = number
  default     = 10
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
