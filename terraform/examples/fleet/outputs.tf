# `battery-twin provision config --terraform-dir .` reads these (terraform output -json).
output "battery_twin_agent" {
  description = "What the agent's [uplink] needs: endpoint, topic prefix, Basic Ingest rules (telemetry, health), and the rigs."
  value = {
    endpoint                 = module.iot.endpoint
    topic_prefix             = module.iot.topic_prefix
    basic_ingest_rule        = local.basic_ingest_rule
    basic_ingest_health_rule = local.basic_ingest_health_rule
    rigs                     = var.rigs
    with_certificate         = keys(local.csrs)
    topics                   = module.iot.topics
  }
}

output "certificate_pems" {
  description = "Device certificate of each rig that has one."
  value       = module.iot.certificate_pems
  sensitive   = true
}

output "alarm_topic_arn" {
  description = "SNS topic of all alarms."
  value       = module.monitoring.alarm_topic_arn
}

output "redshift" {
  description = "Warehouse: workgroup, private endpoint, database, schema, admin secret."
  value = {
    workgroup        = module.warehouse.workgroup_name
    endpoint         = module.warehouse.endpoint_address
    database         = module.warehouse.database
    schema           = module.warehouse.schema
    admin_secret_arn = module.warehouse.admin_secret_arn
  }
}

output "ota" {
  description = "With remote on: for battery-twin model publish (--bucket, --presign-role-arn, --target) and SageMaker training (docs/ota.md); null otherwise."
  value = var.remote ? {
    bucket             = module.ota[0].bucket
    presign_role_arn   = module.ota[0].presign_role_arn
    thing_group        = module.ota[0].thing_group
    sagemaker_role_arn = module.ota[0].sagemaker_role_arn
    sagemaker_channels = module.ota[0].sagemaker_channels
  } : null
}
