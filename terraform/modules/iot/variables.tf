variable "name_prefix" {
  description = "Prefix for resource names, e.g. \"battery-twin\"."
  type        = string
}

variable "rigs" {
  description = "Rig ids. Each becomes an IoT thing of that name, which is also the MQTT client id the agent connects with."
  type        = list(string)

  validation {
    condition     = alltrue([for r in var.rigs : can(regex("^[a-zA-Z0-9:_-]{1,128}$", r))])
    error_message = "A rig id must be an AWS IoT thing name: 1-128 of letters, digits, ':', '_' and '-'."
  }
}

variable "csrs" {
  description = "Certificate signing requests (PEM) by rig id, made on each device by `battery-twin provision csr`. A rig without a CSR gets its thing but no certificate yet. The private keys never leave the devices, so none is in the Terraform state."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.csrs : contains(var.rigs, k) && can(regex("-----BEGIN CERTIFICATE REQUEST-----", v))])
    error_message = "Every key of csrs must be one of rigs, and every value a PEM certificate signing request."
  }
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

variable "streams" {
  description = "Last topic level of each stream the agent publishes: dt/battery-twin/{rig}/{stream}."
  type        = list(string)
  default     = ["telemetry", "cycles", "events", "health"]
}

variable "basic_ingest_rule" {
  description = "Name of the IoT rule that telemetry may be published to through Basic Ingest ($aws/rules/<rule>/<prefix>/{rig}/telemetry). Empty: no Basic Ingest permission."
  type        = string
  default     = ""
}

variable "basic_ingest_health_rule" {
  description = "Name of the IoT rule that health may be published to through Basic Ingest ($aws/rules/<rule>/<prefix>/{rig}/health). Empty: no such permission."
  type        = string
  default     = ""
}

variable "command_topics" {
  description = "Also let each thing subscribe to and receive its own command topics (cmd/battery-twin/{rig}/#). The agent does not use them yet, so least privilege leaves this off."
  type        = bool
  default     = false
}

variable "shadow_name" {
  description = "Named shadow each thing may use for remote config (agent [remote] shadow_name; \"config\"). Empty: no shadow permission (the agent's [remote] shadow is off)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9:_-]{0,64}$", var.shadow_name))
    error_message = "A shadow name is 1-64 of letters, digits, ':', '_' and '-' (or empty for none)."
  }
}

variable "jobs" {
  description = "Let each thing use its own IoT Jobs topics (model updates, diagnostics: agent [remote] jobs)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
