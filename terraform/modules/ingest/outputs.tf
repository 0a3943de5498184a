output "telemetry_rule_name" {
  description = "Rule for telemetry; with Basic Ingest the agent publishes to $aws/rules/<this>/... (agent config uplink.basic_ingest_rule)."
  value       = aws_iot_topic_rule.landing["telemetry"].name
}

output "rule_names" {
  description = "Every rule of this module by purpose."
  value = merge(
    { for k, r in aws_iot_topic_rule.landing : k => r.name },
    { events_log = aws_iot_topic_rule.events_log.name, health = aws_iot_topic_rule.health.name },
  )
}

output "health_rule_name" {
  description = "Rule for health; with Basic Ingest the agent publishes to $aws/rules/<this>/... (agent config uplink.basic_ingest_health_rule)."
  value       = aws_iot_topic_rule.health.name
}

output "health_log_group_name" {
  description = "Log group with one record per health message (rig from the topic)."
  value       = aws_cloudwatch_log_group.health.name
}

output "stream_name" {
  description = "Kinesis landing stream read by Redshift streaming ingestion."
  value       = aws_kinesis_stream.landing.name
}

output "stream_arn" {
  description = "ARN of the landing stream."
  value       = aws_kinesis_stream.landing.arn
}

output "events_log_group_name" {
  description = "Log group with one log event per agent event."
  value       = aws_cloudwatch_log_group.events.name
}

output "error_bucket_name" {
  description = "Bucket of messages a rule action could not deliver."
  value       = aws_s3_bucket.errors.bucket
}

output "health_metric_namespace" {
  description = "Namespace of the per-rig health metrics."
  value       = var.health_metric_namespace
}

output "health_metric_fields" {
  description = "Health fields published as per-rig metrics <rig>.<field> (empty unless health_metrics is set)."
  value       = keys(var.health_metrics)
}
