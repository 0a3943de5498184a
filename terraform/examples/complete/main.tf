# The whole cloud half: IoT things, policy and certificates; rules into Kinesis, CloudWatch Logs and
# metrics; alarms; Redshift Serverless with the views; optionally QuickSight and a simulated rig on EC2.
locals {
  all_rigs = concat(var.rigs, var.ec2_rig ? [var.ec2_rig_name] : [])

  # CSRs made on the devices: <csr_dir>/<rig>.csr.pem, plus the one the EC2 rig posted (second apply).
  file_csrs = {
    for r in var.rigs : r => file("${var.csr_dir}/${r}.csr.pem") if fileexists("${var.csr_dir}/${r}.csr.pem")
  }
  ec2_csr = var.ec2_rig ? module.ec2_rig[0].csr_pem : null
  csrs    = merge(local.file_csrs, local.ec2_csr == null ? {} : { (var.ec2_rig_name) = local.ec2_csr })

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
  rigs                     = local.all_rigs
  csrs                     = local.csrs
  basic_ingest_rule        = local.basic_ingest_rule
  basic_ingest_health_rule = local.basic_ingest_health_rule
  shadow_name              = var.remote ? "config" : ""
  jobs                     = var.remote
}

# Models and diagnostics through IoT Jobs, SageMaker training into the same bucket (docs/ota.md).
module "ota" {
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
  rigs                    = local.all_rigs
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
  source                 = "../../modules/warehouse"
  name_prefix            = var.name_prefix
  vpc_id                 = aws_vpc.this.id
  vpc_cidr               = var.vpc_cidr
  subnet_ids             = aws_subnet.private[*].id
  egress_prefix_list_ids = [aws_vpc_endpoint.s3.prefix_list_id]
  kms_key_arn            = module.kms.key_arn
  stream_name            = module.ingest.stream_name
  stream_arn             = module.ingest.stream_arn
  max_capacity           = var.redshift_max_capacity
  refresh_minutes        = var.redshift_refresh_minutes
  network_ready          = [aws_vpc_endpoint.kinesis.id]
}

module "quicksight" {
  source                     = "../../modules/quicksight"
  count                      = var.quicksight ? 1 : 0
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

module "ec2_rig" {
  source              = "../../modules/ec2_rig"
  count               = var.ec2_rig ? 1 : 0
  name_prefix         = var.name_prefix
  rig                 = var.ec2_rig_name
  vpc_id              = aws_vpc.this.id
  subnet_id           = aws_subnet.public.id
  associate_public_ip = true
  ami_id              = var.ec2_ami_id
  kms_key_arn         = module.kms.key_arn
  kms_key_alias       = module.kms.alias_name
  iot_endpoint        = module.iot.endpoint
  basic_ingest_rule   = local.basic_ingest_rule
  certificate_issued  = contains(keys(local.csrs), var.ec2_rig_name)
  certificate_pem     = lookup(module.iot.certificate_pems, var.ec2_rig_name, null)
  agent_repo_url      = var.agent_repo_url
  agent_ref           = var.agent_ref
}
