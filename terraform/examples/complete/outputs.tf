# `battery-twin provision config --terraform-dir .` reads these (terraform output -json).
output "battery_twin_agent" {
  description = "What the agent's [uplink] needs: endpoint, topic prefix, Basic Ingest rules (telemetry, health), and the rigs."
  value = {
    endpoint                 = module.iot.endpoint
    topic_prefix             = module.iot.topic_prefix
    basic_ingest_rule        = local.basic_ingest_rule
    basic_ingest_health_rule = local.basic_ingest_health_rule
    rigs                     = local.all_rigs
    with_certificate         = keys(local.csrs)
    topics                   = module.iot.topics
  }
}

output "certificate_pems" {
  description = "Device certificate of each rig that has one (public material; provision writes it next to the device's key)."
  value       = module.iot.certificate_pems
  sensitive   = true
}

output "iot_policy_name" {
  description = "IoT policy attached to every rig certificate."
  value       = module.iot.policy_name
}

output "alarm_topic_arn" {
  description = "SNS topic of all alarms."
  value       = module.monitoring.alarm_topic_arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the fleet."
  value       = module.monitoring.dashboard_name
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

output "quicksight_data_sets" {
  description = "QuickSight data set of each dashboard view (empty without quicksight = true)."
  value       = var.quicksight ? module.quicksight[0].data_set_arns : {}
}

output "ec2_rig" {
  description = "The simulated rig on EC2: instance id and where its CSR and certificate pass."
  value = var.ec2_rig ? {
    rig                   = var.ec2_rig_name
    instance_id           = module.ec2_rig[0].instance_id
    csr_posted            = module.ec2_rig[0].csr_pem != null
    csr_parameter         = module.ec2_rig[0].csr_parameter
    certificate_parameter = module.ec2_rig[0].certificate_parameter
  } : null
}

output "ota" {
  description = "For battery-twin model publish (--bucket, --presign-role-arn, --target) and SageMaker training (docs/ota.md)."
  value = {
    bucket             = module.ota.bucket
    presign_role_arn   = module.ota.presign_role_arn
    thing_group        = module.ota.thing_group
    sagemaker_role_arn = module.ota.sagemaker_role_arn
    sagemaker_channels = module.ota.sagemaker_channels
  }
}
