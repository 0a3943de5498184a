variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "rigs" {
  description = "Rig ids of the deployment: the rigs-silent alarm expects this many rigs sending readings (and with per_rig_silent_alarms each gets an alarm of its own)."
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

variable "health_log_group_name" {
  description = "Log group with one record per health message, rig from the topic (ingest module)."
  type        = string
}

variable "health_metric_namespace" {
  description = "Namespace of the per-rig health metrics <rig>.<field> (ingest module)."
  type        = string
}

variable "health_metric_fields" {
  description = "Health fields published as per-rig metrics (ingest module output health_metric_fields); one dashboard widget each. Empty by default."
  type        = list(string)
  default     = []
}

variable "per_rig_silent_alarms" {
  description = "Also one \"rig silent\" alarm per rig on its metric <rig>.readings_rate_s (the ingest module must publish it: health_metrics with readings_rate_s). Costs per rig; the fleet alarm rigs-silent is always there."
  type        = bool
  default     = false

  validation {
    condition     = !var.per_rig_silent_alarms || contains(var.health_metric_fields, "readings_rate_s")
    error_message = "per_rig_silent_alarms needs the per-rig metric readings_rate_s: set the ingest module's health_metrics (the examples do it with per_rig_silent_alarms = true)."
  }
}

variable "fleet_health_metrics" {
  description = "Numeric health fields turned into one fleet-wide metric each (the worst rig is the Maximum), from the health log group."
  type        = list(string)
  default     = ["oldest_unsent_age_s", "dropped_readings", "publish_errors"]

  validation {
    condition     = alltrue([for f in var.fleet_health_metrics : contains(["readings_rate_s", "oldest_unsent_age_s", "store_depth_readings", "dropped_readings", "publish_errors"], f)])
    error_message = "fleet_health_metrics: fields of the health record (readings_rate_s, oldest_unsent_age_s, store_depth_readings, dropped_readings, publish_errors)."
  }
}

variable "fleet_metric_namespace" {
  description = "Namespace of the fleet-wide health metrics."
  type        = string
  default     = "BatteryTwin/Fleet"
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
  description = "Minutes without readings (or without health messages at all) after which a rig counts as silent. The agents' uplink.health_heartbeat_s must be at most silent_minutes * 60 / 4 (150 s for the default 10)."
  type        = number
  default     = 10

  validation {
    condition     = var.silent_minutes >= 4 && var.silent_minutes % 2 == 0
    error_message = "silent_minutes: an even number of minutes, at least 4 (the fleet alarm counts rigs over half of it, in whole minutes)."
  }
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
