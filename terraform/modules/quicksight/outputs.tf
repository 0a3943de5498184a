output "data_source_arn" {
  description = "QuickSight data source of the Redshift workgroup."
  value       = aws_quicksight_data_source.redshift.arn
}

output "data_set_arns" {
  description = "Data set of each dashboard view."
  value       = { for k, d in aws_quicksight_data_set.view : k => d.arn }
}

output "data_set_views" {
  description = "Redshift view behind each data set."
  value       = { for k, d in local.data_sets : k => "${var.schema}.${d.view}" }
}
