output "endpoint" {
  description = "IoT Core ATS data endpoint (agent config uplink.endpoint)."
  value       = data.aws_iot_endpoint.ats.endpoint_address
}

output "thing_names" {
  description = "Thing name of each rig (= MQTT client id = rig id)."
  value       = { for k, t in aws_iot_thing.rig : k => t.name }
}

output "thing_arns" {
  description = "Thing ARN of each rig."
  value       = { for k, t in aws_iot_thing.rig : k => t.arn }
}

output "certificate_arns" {
  description = "Certificate ARN of each rig that has one."
  value       = { for k, c in aws_iot_certificate.rig : k => c.arn }
}

output "certificate_pems" {
  description = "Device certificate (PEM) of each rig that has one. Public material, but the provider marks it sensitive."
  value       = { for k, c in aws_iot_certificate.rig : k => c.certificate_pem }
  sensitive   = true
}

output "policy_name" {
  description = "Name of the IoT policy attached to every rig certificate."
  value       = aws_iot_policy.rig.name
}

output "topic_prefix" {
  description = "Topic prefix (agent config uplink.topic_prefix)."
  value       = var.topic_prefix
}

output "topics" {
  description = "Topic of each stream with {rig} for the rig id."
  value       = { for s in var.streams : s => "${var.topic_prefix}/{rig}/${s}" }
}
