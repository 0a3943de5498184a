# A small lab (up to about 100 cells, say a dozen rigs of 8) for the least fixed cost that keeps every view:
# IoT things and rules, the alarms (cell events and the fleet's rigs-silent alarm), Redshift Serverless at its
# smallest base capacity refreshed every two hours, and QuickSight with its four data sets. No simulated rig, no
# interface endpoint: the workgroup reaches Kinesis without enhanced VPC routing. What each choice saves, and what
# it gives up: README.md and docs/cost-per-cell-month.md.
locals {
  csrs = {
    for r in var.rigs : r => file("${var.csr_dir}/${r}.csr.pem") if fileexists("${var.csr_dir}/${r}.csr.pem")
  }
  basic_ingest_rule        = module.ingest.telemetry_rule_name
  basic_ingest_health_rule = module.ingest.health_rule_name
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
  source         = "../../modules/ingest"
  name_prefix    = var.name_prefix
  kms_key_arn    = module.kms.key_arn
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
  source      = "../../modules/warehouse"
  name_prefix = var.name_prefix
  vpc_id      = aws_vpc.this.id
  vpc_cidr    = var.vpc_cidr
  subnet_ids  = aws_subnet.private[*].id
  kms_key_arn = module.kms.key_arn
  stream_name = module.ingest.stream_name
  stream_arn  = module.ingest.stream_arn
  # Redshift reads Kinesis over AWS's network, not through this VPC: no interface endpoint (7.30 USD/month).
  enhanced_vpc_routing = false
  base_capacity        = var.redshift_base_capacity
  max_capacity         = var.redshift_max_capacity
  refresh_minutes      = var.redshift_refresh_minutes
}

module "quicksight" {
  source                     = "../../modules/quicksight"
  name_prefix                = var.name_prefix
  vpc_id                     = aws_vpc.this.id
  subnet_ids                 = aws_subnet.private[*].id
  redshift_security_group_id = module.warehouse.security_group_id
  redshift_host              = module.warehouse.endpoint_address
  redshift_port              = module.warehouse.port
  database                   = module.warehouse.database
  schema                     = module.warehouse.schema
  credentials_secret_arn     = var.quicksight_secret_arn != "" ? var.quicksight_secret_arn : module.warehouse.admin_secret_arn
  principal_arns             = var.quicksight_principal_arns
}
