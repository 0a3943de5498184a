# An EC2 instance that runs the agent on its simulated rig as the systemd service, as a rig of its own.
#
# Its private key is made on the instance and never leaves it. The certificate comes from its CSR in two
# applies, through two SSM parameters:
#   1st apply: instance boots, fetches battery-twin at agent_ref (a commit or tag), systemd/install.sh installs it, `battery-twin provision csr` makes the
#              key and CSR, and the instance puts the CSR into the csr parameter.
#   2nd apply: Terraform reads the CSR (csr_pem output -> iot module), issues the certificate and writes it to
#              the certificate parameter; a timer on the instance picks it up, writes the agent config
#              (`battery-twin provision config`) and starts the service.
# No inbound rule at all: administration goes through SSM Session Manager.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "ubuntu" {
  count = var.ami_id == "" ? 1 : 0
  name  = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

locals {
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  ami_id     = var.ami_id != "" ? var.ami_id : nonsensitive(data.aws_ssm_parameter.ubuntu[0].value)

  param_prefix = "/${var.name_prefix}/rigs/${var.rig}"
  csr_param    = "${local.param_prefix}/csr"
  cert_param   = "${local.param_prefix}/certificate"
  param_arn    = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter"

  pending   = "pending: the instance has not posted its CSR yet"
  csr_value = try(nonsensitive(aws_ssm_parameter.csr.value), local.pending)

  # The instance's settings travel as one JSON document that bootstrap.sh parses (and checks field by field); it
  # is never sourced or pasted into a shell line, so no value can run as code on the instance.
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    bootstrap_b64 = base64encode(file("${path.module}/bootstrap.sh"))
    settings = {
      RIG               = var.rig
      REGION            = local.region
      CSR_PARAM         = local.csr_param
      CERT_PARAM        = local.cert_param
      KMS_KEY_ID        = var.kms_key_alias
      ENDPOINT          = var.iot_endpoint
      TOPIC_PREFIX      = var.topic_prefix
      BASIC_INGEST_RULE = var.basic_ingest_rule
      REPO_URL          = var.agent_repo_url
      REPO_REF          = var.agent_ref
    }
  })
}

# ---------------------------------------------------------------------------------------------- CSR / certificate
resource "aws_ssm_parameter" "csr" {
  name        = local.csr_param
  description = "CSR of rig ${var.rig}, posted by the instance (the private key stays there)"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = local.pending
  tags        = var.tags

  lifecycle {
    ignore_changes = [value] # the instance writes the real CSR
  }
}

resource "aws_ssm_parameter" "certificate" {
  count       = var.certificate_issued ? 1 : 0
  name        = local.cert_param
  description = "Device certificate of rig ${var.rig}, issued by IoT Core from its CSR"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = var.certificate_pem
  tags        = var.tags
}

# ---------------------------------------------------------------------------------------------- instance role
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name_prefix}-rig-${var.rig}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "instance" {
  statement {
    sid       = "PostItsCsr"
    actions   = ["ssm:PutParameter"]
    resources = ["${local.param_arn}${local.csr_param}"]
  }
  statement {
    sid       = "ReadItsCertificate"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.param_arn}${local.cert_param}"]
  }
  statement {
    sid       = "ParametersAreEncryptedWithTheKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "instance" {
  name   = "own-csr-and-certificate"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name_prefix}-rig-${var.rig}"
  role = aws_iam_role.instance.name
  tags = var.tags
}

# ---------------------------------------------------------------------------------------------- network
resource "aws_security_group" "instance" {
  name        = "${var.name_prefix}-rig-${var.rig}"
  description = "Simulated rig: no inbound at all; out to package mirrors, IoT Core and SSM"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "out" {
  for_each = {
    https = 443  # SSM, Canonical snap store, PyPI, git over HTTPS
    mqtts = 8883 # IoT Core, MQTT over TLS with the device certificate
    http  = 80   # Ubuntu apt mirrors (packages are signed)
  }
  security_group_id = aws_security_group.instance.id
  description       = each.key
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = "0.0.0.0/0"
}

# ---------------------------------------------------------------------------------------------- instance
resource "aws_instance" "rig" {
  # checkov:skip=CKV_AWS_88:A public address only for egress, so a demo VPC needs no NAT gateway; the security group has no inbound rule and administration is through SSM. Off by default (associate_public_ip).
  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  vpc_security_group_ids      = [aws_security_group.instance.id]
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  associate_public_ip_address = var.associate_public_ip
  ebs_optimized               = true
  monitoring                  = true
  user_data_base64            = base64encode(local.user_data) # kept as is in the plan, so tests can read it
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 16
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  tags = merge(var.tags, { Name = "${var.name_prefix}-rig-${var.rig}" })


  depends_on = [aws_ssm_parameter.csr, aws_iam_role_policy.instance]
}
