# IoT rules (SQL 2016-03-23) from the agent's topics to their destinations:
#   telemetry, cycles, events -> Kinesis landing stream (one record per message) -> Redshift streaming ingestion
#   events                    -> CloudWatch Logs, one log event per agent event (metric filters count them)
#   health                    -> CloudWatch Logs, one small record per health message (the monitoring module's
#                                fleet alarm and metrics read it); optionally CloudWatch metrics per rig and field
# The rig in anything written comes from the topic, which the IoT policy ties to the device's certificate, never
# from the payload. Every rule sends what its action could not deliver to the error bucket (error_action), so a
# failed action loses no message: IoT Core has already acknowledged it to the agent.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  rule_prefix = replace(var.name_prefix, "-", "_")
  # The rig id is the topic level after the prefix: dt/battery-twin/{rig}/telemetry -> topic(3).
  rig_level = length(split("/", var.topic_prefix)) + 1
  rig       = "topic(${local.rig_level})"

  landing_streams = ["telemetry", "cycles", "events"]

  # Each agent event as a log event: the fields of an events.v1 item, with the rig taken from the topic.
  event_fields = ["seq", "ts", "kind", "level", "source", "cell", "message", "data"]
  # The health record in the health log group (bench/cloud_cost.py HEALTH_LOG_FIELDS prices it), plus any field
  # published as a per-rig metric.
  health_fields = distinct(concat(
    ["ts", "reason", "uplink_state", "readings_rate_s", "oldest_unsent_age_s", "store_depth_readings", "dropped_readings", "publish_errors"],
    keys(var.health_metrics),
  ))

  error_key = "$${timestamp()}-$${newuuid()}.json"
}

# ---------------------------------------------------------------------------------------------- destinations
resource "aws_kinesis_stream" "landing" {
  name             = "${var.name_prefix}-landing"
  shard_count      = var.shard_count
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "events" {
  name              = "/${var.name_prefix}/events"
  retention_in_days = var.events_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "health" {
  name              = "/${var.name_prefix}/health"
  retention_in_days = var.health_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# Messages a rule action failed to deliver. The only copy of such a message lives here (IoT Core acknowledged it
# to the agent), so the bucket is versioned, encrypted with the key and private.
resource "aws_s3_bucket" "errors" {
  # checkov:skip=CKV_AWS_18:Holds only failed rule deliveries, written by the rules engine role alone; access logs would need a second bucket of their own.
  # checkov:skip=CKV_AWS_144:Single-region deployment; versioning protects the objects and a replica would double the cost of a fallback path.
  bucket        = "${var.name_prefix}-iot-errors-${local.account_id}"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "errors" {
  bucket = aws_s3_bucket.errors.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "errors" {
  bucket                  = aws_s3_bucket.errors.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "errors" {
  bucket = aws_s3_bucket.errors.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "errors" {
  bucket = aws_s3_bucket.errors.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "errors" {
  bucket = aws_s3_bucket.errors.id
  rule {
    id     = "expire-failed-deliveries"
    status = "Enabled"
    filter {}
    expiration {
      days = var.error_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# Object-created events go to EventBridge, where the monitoring module turns them into a notification.
resource "aws_s3_bucket_notification" "errors" {
  bucket      = aws_s3_bucket.errors.id
  eventbridge = true
}

data "aws_iam_policy_document" "errors_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.errors.arn,
      "${aws_s3_bucket.errors.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "errors" {
  bucket = aws_s3_bucket.errors.id
  policy = data.aws_iam_policy_document.errors_bucket.json
}

# ---------------------------------------------------------------------------------------------- rules' role
data "aws_iam_policy_document" "rules_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rules" {
  name               = "${var.name_prefix}-iot-rules"
  assume_role_policy = data.aws_iam_policy_document.rules_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "rules" {
  statement {
    sid       = "LandingStream"
    actions   = ["kinesis:PutRecord"]
    resources = [aws_kinesis_stream.landing.arn]
  }
  statement {
    sid       = "EventsAndHealthLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.events.arn}:*", "${aws_cloudwatch_log_group.health.arn}:*"]
  }
  dynamic "statement" {
    for_each = length(var.health_metrics) > 0 ? [1] : []
    content {
      sid       = "HealthMetrics"
      actions   = ["cloudwatch:PutMetricData"]
      resources = ["*"] # PutMetricData has no resource-level permissions; the condition confines it to one namespace
      condition {
        test     = "StringEquals"
        variable = "cloudwatch:namespace"
        values   = [var.health_metric_namespace]
      }
    }
  }
  statement {
    sid       = "ErrorBucket"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.errors.arn}/*"]
  }
  statement {
    sid       = "EncryptWithTheDeploymentKey"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "rules" {
  name   = "deliver"
  role   = aws_iam_role.rules.id
  policy = data.aws_iam_policy_document.rules.json
}

# ---------------------------------------------------------------------------------------------- rules
# telemetry (Basic Ingest capable: $aws/rules/<name>/<prefix>/{rig}/telemetry triggers it as well), cycles,
# events: the whole message plus the authenticated rig from the topic, one Kinesis record per message.
resource "aws_iot_topic_rule" "landing" {
  for_each    = toset(local.landing_streams)
  name        = "${local.rule_prefix}_${each.key}"
  description = "${each.key} messages into the landing stream (one record per message) for Redshift"
  enabled     = true
  sql_version = "2016-03-23"
  sql         = "SELECT *, ${local.rig} AS topic_rig, topic() AS topic, timestamp() AS received_ms FROM '${var.topic_prefix}/+/${each.key}'"

  kinesis {
    stream_name   = aws_kinesis_stream.landing.name
    partition_key = "$${${local.rig}}"
    role_arn      = aws_iam_role.rules.arn
  }

  error_action {
    s3 {
      bucket_name = aws_s3_bucket.errors.bucket
      key         = "${each.key}/$${${local.rig}}/${local.error_key}"
      role_arn    = aws_iam_role.rules.arn
    }
  }

  tags = var.tags
}

# events: one CloudWatch Logs event per agent event (batch mode takes the array apart). The nested query rebuilds
# each event with the rig of the topic: a device can write anything into its payload, including another rig's id,
# but can publish only on its own topic.
resource "aws_iot_topic_rule" "events_log" {
  name        = "${local.rule_prefix}_events_log"
  description = "each agent event as one log event, for metric filters and alarms"
  enabled     = true
  sql_version = "2016-03-23"
  sql         = "SELECT VALUE (SELECT ${local.rig} AS rig, ${join(", ", local.event_fields)} FROM events) FROM '${var.topic_prefix}/+/events'"

  cloudwatch_logs {
    log_group_name = aws_cloudwatch_log_group.events.name
    batch_mode     = true
    role_arn       = aws_iam_role.rules.arn
  }

  error_action {
    s3 {
      bucket_name = aws_s3_bucket.errors.bucket
      key         = "events_log/$${${local.rig}}/${local.error_key}"
      role_arn    = aws_iam_role.rules.arn
    }
  }

  tags = var.tags
}

# health (Basic Ingest capable, like telemetry): one small record per message into the health log group, where a
# Contributor Insights rule counts the rigs that report readings (monitoring module: the rigs-silent alarm). Only
# with health_metrics set, also metrics named <rig>.<field> (each costs a custom metric per rig and a PutMetricData
# request per message: the per-rig silent alarms need readings_rate_s).
resource "aws_iot_topic_rule" "health" {
  name        = "${local.rule_prefix}_health"
  description = "agent health into the health log group (and per-rig metrics if configured)"
  enabled     = true
  sql_version = "2016-03-23"
  sql         = "SELECT ${local.rig} AS rig, ${join(", ", local.health_fields)} FROM '${var.topic_prefix}/+/health'"

  cloudwatch_logs {
    log_group_name = aws_cloudwatch_log_group.health.name
    role_arn       = aws_iam_role.rules.arn
  }

  dynamic "cloudwatch_metric" {
    for_each = var.health_metrics
    content {
      metric_namespace = var.health_metric_namespace
      metric_name      = "$${${local.rig}}.${cloudwatch_metric.key}"
      metric_value     = "$${${cloudwatch_metric.key}}"
      metric_unit      = cloudwatch_metric.value
      role_arn         = aws_iam_role.rules.arn
    }
  }

  error_action {
    s3 {
      bucket_name = aws_s3_bucket.errors.bucket
      key         = "health/$${${local.rig}}/${local.error_key}"
      role_arn    = aws_iam_role.rules.arn
    }
  }

  tags = var.tags
}
