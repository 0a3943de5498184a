# A fleet of physical rigs into an existing VPC: IoT things and certificates, rules, alarms, Redshift.
# No simulated rig and no QuickSight (see ../complete for those).
locals {
  csrs = {
    for r in var.rigs : r => file("${var.csr_dir}/${r}.csr.pem") if fileexists("${var.csr_dir}/${r}.csr.pem")
  }
  basic_ingest_rule        = var.basic_ingest ? module.ingest.telemetry_rule_name : ""
  basic_ingest_health_rule = var.basic_ingest ? module.ingest.health_rule_name : ""
}

module "kms" {
  source      = "../../modules/kms"
  name_prefix = var.name_prefix
}

module "iot" {
  source                   = "../../modules/iot"
  name_prefix              = var.name_prefix
  rigs                     = var.rigs
  csrs                     = local.csrs
  basic_ingest_rule        = local.basic_ingest_rule
  basic_ingest_health_rule = local.basic_ingest_health_rule
  shadow_name              = var.remote ? "config" : ""
  jobs                     = var.remote
}

# With remote on: signed models and diagnostics through IoT Jobs from one artifacts bucket (docs/ota.md).
module "ota" {
  count       = var.remote ? 1 : 0
  source      = "../../modules/ota"
  name_prefix = var.name_prefix
  kms_key_arn = module.kms.key_arn
  thing_names = values(module.iot.thing_names)
}

module "ingest" {
  source      = "../../modules/ingest"
  name_prefix = var.name_prefix
  kms_key_arn = module.kms.key_arn
  # Per-rig metrics only for the optional per-rig silent alarms (each costs per rig: docs/cost-per-cell-month.md).
  health_metrics = var.per_rig_silent_alarms ? { readings_rate_s = "Count/Second" } : {}
}

module "monitoring" {
  source                  = "../../modules/monitoring"
  name_prefix             = var.name_prefix
  rigs                    = var.rigs
  kms_key_arn             = module.kms.key_arn
  events_log_group_name   = module.ingest.events_log_group_name
  health_log_group_name   = module.ingest.health_log_group_name
  health_metric_namespace = module.ingest.health_metric_namespace
  health_metric_fields    = module.ingest.health_metric_fields
  stream_name             = module.ingest.stream_name
  error_bucket_name       = module.ingest.error_bucket_name
  alarm_emails            = var.alarm_emails
  per_rig_silent_alarms   = var.per_rig_silent_alarms
}

module "warehouse" {
  source                     = "../../modules/warehouse"
  name_prefix                = var.name_prefix
  vpc_id                     = var.vpc_id
  vpc_cidr                   = var.vpc_cidr
  subnet_ids                 = var.private_subnet_ids
  kms_key_arn                = module.kms.key_arn
  stream_name                = module.ingest.stream_name
  stream_arn                 = module.ingest.stream_arn
  enhanced_vpc_routing       = var.enhanced_vpc_routing
  allowed_security_group_ids = var.redshift_client_security_group_ids
  refresh_minutes            = var.redshift_refresh_minutes
}
