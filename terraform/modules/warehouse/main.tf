# Redshift Serverless, private: no public endpoint, reached only from security groups in its VPC. It pulls
# the landing stream itself (streaming ingestion with an IAM role), so nothing outside needs a way in.
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  port = 5439
  # Spelled out rather than read from the role, so the SQL (and the statements' for_each) is known at plan time.
  streaming_role_name = "${var.name_prefix}-redshift-streaming"
  streaming_role_arn  = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${local.streaming_role_name}"
  sql_dir             = coalesce(var.sql_dir, "${path.module}/../../../cloud/sql")
  sql_vars = {
    schema             = var.schema
    kinesis_schema     = var.kinesis_schema
    stream_name        = var.stream_name
    streaming_role_arn = local.streaming_role_arn
    auto_refresh       = var.refresh_minutes == 0 ? "YES" : "NO"
  }
  # A statement ends with ';' at the end of a line; a piece with nothing but comments is not a statement.
  stages = {
    for stage in ["01_schemas", "02_landing", "03_views"] : stage => [
      for piece in split(";\n", templatefile("${local.sql_dir}/${stage}.sql", local.sql_vars)) :
      trimspace(piece) if length(regexall("(?m)^[ \\t]*[^- \\t\\r\\n]", piece)) > 0
    ]
  }
}

resource "aws_security_group" "workgroup" {
  name        = "${var.name_prefix}-redshift"
  description = "Redshift Serverless workgroup: in from allowed security groups only, out to AWS endpoints"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "allowed" {
  for_each                     = toset(var.allowed_security_group_ids)
  security_group_id            = aws_security_group.workgroup.id
  description                  = "Redshift from an allowed security group"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = each.key
}

resource "aws_vpc_security_group_egress_rule" "vpc_https" {
  security_group_id = aws_security_group.workgroup.id
  description       = "HTTPS to interface endpoints in the VPC (Kinesis)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_vpc_security_group_egress_rule" "prefix_lists" {
  count             = length(var.egress_prefix_list_ids)
  security_group_id = aws_security_group.workgroup.id
  description       = "HTTPS to a gateway endpoint (S3)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.egress_prefix_list_ids[count.index]
}

# ---------------------------------------------------------------------------------------------- streaming role
data "aws_iam_policy_document" "streaming_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "streaming" {
  name               = local.streaming_role_name
  assume_role_policy = data.aws_iam_policy_document.streaming_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "streaming" {
  statement {
    sid = "ReadTheLandingStream"
    actions = [
      "kinesis:DescribeStreamSummary",
      "kinesis:DescribeStream",
      "kinesis:GetShardIterator",
      "kinesis:GetRecords",
      "kinesis:ListShards",
    ]
    resources = [var.stream_arn]
  }
  statement {
    sid       = "DecryptTheStream"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "streaming" {
  name   = "read-landing-stream"
  role   = aws_iam_role.streaming.id
  policy = data.aws_iam_policy_document.streaming.json
}

# ---------------------------------------------------------------------------------------------- Redshift Serverless
resource "aws_redshiftserverless_namespace" "this" {
  namespace_name = var.name_prefix
  db_name        = var.database
  admin_username = "btadmin"
  # Redshift makes the admin password and keeps it in Secrets Manager (rotated there): never in Terraform state.
  manage_admin_password            = true
  admin_password_secret_kms_key_id = var.kms_key_arn
  kms_key_id                       = var.kms_key_arn
  iam_roles                        = [aws_iam_role.streaming.arn]
  default_iam_role_arn             = aws_iam_role.streaming.arn
  log_exports                      = ["userlog", "connectionlog", "useractivitylog"]
  tags                             = var.tags
}

resource "aws_redshiftserverless_workgroup" "this" {
  workgroup_name       = var.name_prefix
  namespace_name       = aws_redshiftserverless_namespace.this.namespace_name
  base_capacity        = var.base_capacity
  max_capacity         = var.max_capacity
  publicly_accessible  = false
  enhanced_vpc_routing = var.enhanced_vpc_routing
  subnet_ids           = var.subnet_ids
  security_group_ids   = [aws_security_group.workgroup.id]
  port                 = local.port

  config_parameter {
    parameter_key   = "require_ssl"
    parameter_value = "true"
  }
  config_parameter {
    parameter_key   = "enable_user_activity_logging"
    parameter_value = "true"
  }

  tags = var.tags
}

# ---------------------------------------------------------------------------------------------- schema (SQL)
# cloud/sql runs stage by stage through the Data API as the admin user. Statements of a stage do not depend
# on each other (views are late-binding), so only the stages are ordered. The streaming view needs the way to
# Kinesis (endpoint or NAT) first: the caller passes its ids in network_ready.
resource "terraform_data" "network_ready" {
  input = var.network_ready
}

resource "aws_redshiftdata_statement" "schemas" {
  for_each       = var.run_sql ? { for i, s in local.stages["01_schemas"] : format("%02d", i) => s } : {}
  workgroup_name = aws_redshiftserverless_workgroup.this.workgroup_name
  database       = var.database
  secret_arn     = aws_redshiftserverless_namespace.this.admin_password_secret_arn
  sql            = each.value
  depends_on     = [terraform_data.network_ready]
}

resource "aws_redshiftdata_statement" "landing" {
  for_each       = var.run_sql ? { for i, s in local.stages["02_landing"] : format("%02d", i) => s } : {}
  workgroup_name = aws_redshiftserverless_workgroup.this.workgroup_name
  database       = var.database
  secret_arn     = aws_redshiftserverless_namespace.this.admin_password_secret_arn
  sql            = each.value
  depends_on     = [aws_redshiftdata_statement.schemas]
}

resource "aws_redshiftdata_statement" "views" {
  for_each       = var.run_sql ? { for i, s in local.stages["03_views"] : format("%02d", i) => s } : {}
  workgroup_name = aws_redshiftserverless_workgroup.this.workgroup_name
  database       = var.database
  secret_arn     = aws_redshiftserverless_namespace.this.admin_password_secret_arn
  sql            = each.value
  depends_on     = [aws_redshiftdata_statement.landing]
}

# ---------------------------------------------------------------------------------------------- scheduled refresh
# With refresh_minutes > 0 the landing view is refreshed on a schedule through the Data API, as the admin user
# that owns it, so the workgroup is billed for a short refresh every N minutes instead of around the clock.
data "aws_region" "current" {}

locals {
  scheduled       = var.refresh_minutes > 0
  refresh_sql     = "REFRESH MATERIALIZED VIEW ${var.schema}.landing"
  workgroup_arn   = "arn:${data.aws_partition.current.partition}:redshift-serverless:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:workgroup/*"
  scheduler_role  = "${var.name_prefix}-redshift-refresh"
  refresh_minutes = max(var.refresh_minutes, 1)
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = local.scheduled ? 1 : 0
  name               = local.scheduler_role
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "RunTheRefresh"
    actions   = ["redshift-data:ExecuteStatement"]
    resources = [aws_redshiftserverless_workgroup.this.arn]
  }
  statement {
    sid       = "AsTheAdminUser"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_redshiftserverless_namespace.this.admin_password_secret_arn]
  }
  statement {
    sid       = "DecryptTheSecret"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count  = local.scheduled ? 1 : 0
  name   = "refresh-landing-view"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "refresh" {
  count                        = local.scheduled ? 1 : 0
  name                         = "${var.name_prefix}-refresh-landing"
  description                  = "Refresh the streaming landing view of ${var.name_prefix}"
  schedule_expression          = "rate(${local.refresh_minutes} ${local.refresh_minutes == 1 ? "minute" : "minutes"})"
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:aws:scheduler:::aws-sdk:redshiftdata:executeStatement"
    role_arn = aws_iam_role.scheduler[0].arn
    input = jsonencode({
      WorkgroupName = aws_redshiftserverless_workgroup.this.workgroup_name
      Database      = var.database
      SecretArn     = aws_redshiftserverless_namespace.this.admin_password_secret_arn
      Sql           = local.refresh_sql
    })
  }

  depends_on = [aws_redshiftdata_statement.landing]
}
