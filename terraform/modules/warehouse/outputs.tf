output "workgroup_name" {
  description = "Redshift Serverless workgroup."
  value       = aws_redshiftserverless_workgroup.this.workgroup_name
}

output "endpoint_address" {
  description = "Private endpoint of the workgroup (resolvable inside the VPC only)."
  value       = try(aws_redshiftserverless_workgroup.this.endpoint[0].address, null)
}

output "port" {
  description = "Port of the workgroup."
  value       = local.port
}

output "database" {
  description = "Database name."
  value       = var.database
}

output "schema" {
  description = "Schema of the landing view and the typed views."
  value       = var.schema
}

output "admin_secret_arn" {
  description = "Secrets Manager secret with the admin user name and password (managed by Redshift)."
  value       = aws_redshiftserverless_namespace.this.admin_password_secret_arn
}

output "security_group_id" {
  description = "Security group of the workgroup."
  value       = aws_security_group.workgroup.id
}

output "streaming_role_arn" {
  description = "Role Redshift assumes to read the landing stream."
  value       = aws_iam_role.streaming.arn
}

output "sql_statements" {
  description = "The SQL run on apply, by stage (rendered templates of cloud/sql)."
  value       = local.stages
}

output "refresh" {
  description = "How the landing view refreshes: \"auto\" or the schedule expression."
  value       = local.scheduled ? aws_scheduler_schedule.refresh[0].schedule_expression : "auto"
}
