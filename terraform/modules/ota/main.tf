# Shipping models to the rigs (docs/ota.md): the artifacts bucket, the role IoT Jobs presigns download URLs
# with (rigs never hold S3 credentials), the thing group jobs roll out to, and the SageMaker training role whose
# input channel and output path are prefixes of the same bucket, so "train in SageMaker, ship to the rigs" is one path.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id      = data.aws_caller_identity.current.account_id
  models_prefix   = "models/"
  diag_prefix     = "diagnostics/"
  training_prefix = "training/"
  output_prefix   = "sagemaker-output/"
}

# ---------------------------------------------------------------------------------------------- artifacts bucket
resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV_AWS_18:Written only by the publisher and SageMaker, read only through presigned URLs made by one role; access logs would need a second bucket of their own.
  # checkov:skip=CKV_AWS_144:Single-region deployment; versioning keeps every published model and a replica would double the cost.
  bucket        = "${var.name_prefix}-artifacts-${local.account_id}"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  rule {
    id     = "expire-diagnostics-and-old-versions"
    status = "Enabled"
    filter {
      prefix = local.diag_prefix
    }
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
  }
}

resource "aws_s3_bucket_notification" "artifacts" {
  bucket      = aws_s3_bucket.artifacts.id
  eventbridge = true
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
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

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json
}

# ---------------------------------------------------------------------------------------------- presign role
data "aws_iam_policy_document" "iot_assume" {
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

resource "aws_iam_role" "presign" {
  name                 = "${var.name_prefix}-ota-presign"
  assume_role_policy   = data.aws_iam_policy_document.iot_assume.json
  max_session_duration = max(3600, var.presign_expiry_s)
  tags                 = var.tags
}

# Read the published models, nothing else: a presigned URL can do no more than the role that signed it.
data "aws_iam_policy_document" "presign" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}*"]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "presign" {
  name   = "read-models"
  role   = aws_iam_role.presign.id
  policy = data.aws_iam_policy_document.presign.json
}

# ---------------------------------------------------------------------------------------------- rollout group
resource "aws_iot_thing_group" "rollout" {
  name = "${var.name_prefix}-rigs"
  properties {
    description = "Rigs that model updates and diagnostics jobs roll out to"
  }
  tags = var.tags
}

resource "aws_iot_thing_group_membership" "rollout" {
  for_each         = toset(var.thing_names)
  thing_name       = each.key
  thing_group_name = aws_iot_thing_group.rollout.name
}

# ---------------------------------------------------------------------------------------------- SageMaker training
data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name_prefix}-sagemaker-training"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
  tags               = var.tags
}

# The training channel is read, the model and evaluation written; its logs go to the SageMaker log groups.
data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ListTheChannels"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.training_prefix}*", "${local.output_prefix}*"]
    }
  }
  statement {
    sid       = "ReadTraining"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.training_prefix}*"]
  }
  statement {
    sid       = "WriteOutput"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.output_prefix}*"]
  }
  statement {
    sid       = "UseTheBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "TrainingLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:*:${local.account_id}:log-group:/aws/sagemaker/TrainingJobs*"]
  }
  statement {
    sid       = "TrainingMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/TrainingJobs"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "training-channels"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}
