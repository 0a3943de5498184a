output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_names" {
  description = "Names of the cell alarms by kind and of the rig-silent alarms by rig."
  value = {
    cell   = { for k, a in aws_cloudwatch_metric_alarm.event : k => a.alarm_name }
    silent = { for k, a in aws_cloudwatch_metric_alarm.rig_silent : k => a.alarm_name }
  }
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the fleet."
  value       = aws_cloudwatch_dashboard.fleet.dashboard_name
}
