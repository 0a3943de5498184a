output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_names" {
  description = "Names of the cell alarms by kind, of the fleet alarm rigs_silent, and of the per-rig silent alarms by rig (if enabled)."
  value = {
    cell        = { for k, a in aws_cloudwatch_metric_alarm.event : k => a.alarm_name }
    rigs_silent = aws_cloudwatch_metric_alarm.rigs_silent.alarm_name
    silent      = { for k, a in aws_cloudwatch_metric_alarm.rig_silent : k => a.alarm_name }
  }
}

output "rigs_reporting_rule_name" {
  description = "Contributor Insights rule that counts the rigs sending readings (its report names them)."
  value       = aws_cloudwatch_contributor_insight_rule.rigs_reporting.rule_name
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the fleet."
  value       = aws_cloudwatch_dashboard.fleet.dashboard_name
}
