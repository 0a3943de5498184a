# Things, one policy shared by all of them and certificates made from CSRs.
#
# The policy is written with policy variables, so one document serves every rig and still confines each
# connection to its own thing: a client may connect only with the client id of the thing its certificate is
# attached to, and publish only to topics carrying that thing name.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_iot_endpoint" "ats" {
  endpoint_type = "iot:Data-ATS"
}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}:iot:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  thing      = "$${iot:Connection.Thing.ThingName}"
  publish_topics = concat(
    [for s in var.streams : "${local.arn_prefix}:topic/${var.topic_prefix}/${local.thing}/${s}"],
    var.basic_ingest_rule == "" ? [] : [
      "${local.arn_prefix}:topic/$aws/rules/${var.basic_ingest_rule}/${var.topic_prefix}/${local.thing}/telemetry"
    ],
    var.basic_ingest_health_rule == "" ? [] : [
      "${local.arn_prefix}:topic/$aws/rules/${var.basic_ingest_health_rule}/${var.topic_prefix}/${local.thing}/health"
    ],
  )
  # Device Shadow (one named shadow) and Jobs, each thing its own only (agent/remote: [remote] shadow, jobs).
  shadow_prefix = "$aws/things/${local.thing}/shadow/name/${var.shadow_name}"
  jobs_prefix   = "$aws/things/${local.thing}/jobs"
  remote_publish = concat(
    var.shadow_name == "" ? [] : ["${local.shadow_prefix}/update", "${local.shadow_prefix}/get"],
    var.jobs ? ["${local.jobs_prefix}/start-next", "${local.jobs_prefix}/*/update"] : [],
  )
  # Subscribe takes the filters as the agent writes them ('+' is a literal character in a policy resource);
  # receive takes the topics, where the job id is the one wildcard.
  remote_replies = concat(
    var.shadow_name == "" ? [] : [
      for t in ["update/delta", "update/accepted", "update/rejected", "get/accepted", "get/rejected"] :
      "${local.shadow_prefix}/${t}"
    ],
    var.jobs ? ["${local.jobs_prefix}/notify-next", "${local.jobs_prefix}/start-next/accepted", "${local.jobs_prefix}/start-next/rejected"] : [],
  )
  remote_job_replies = var.jobs ? ["update/accepted", "update/rejected"] : []
  remote_subscribe = concat(
    [for t in local.remote_replies : "${local.arn_prefix}:topicfilter/${t}"],
    [for t in local.remote_job_replies : "${local.arn_prefix}:topicfilter/${local.jobs_prefix}/+/${t}"],
  )
  remote_receive = concat(
    [for t in local.remote_replies : "${local.arn_prefix}:topic/${t}"],
    [for t in local.remote_job_replies : "${local.arn_prefix}:topic/${local.jobs_prefix}/*/${t}"],
  )

  command_prefix = "cmd/${element(split("/", var.topic_prefix), length(split("/", var.topic_prefix)) - 1)}/${local.thing}"

  statements = concat(
    [
      {
        Sid       = "ConnectOnlyAsTheAttachedThing"
        Effect    = "Allow"
        Action    = "iot:Connect"
        Resource  = "${local.arn_prefix}:client/${local.thing}"
        Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
      },
      {
        Sid      = "PublishOnlyToItsOwnTopics"
        Effect   = "Allow"
        Action   = "iot:Publish"
        Resource = concat(local.publish_topics, [for t in local.remote_publish : "${local.arn_prefix}:topic/${t}"])
      },
    ],
    length(local.remote_subscribe) == 0 ? [] : [
      {
        Sid      = "SubscribeOnlyToItsOwnShadowAndJobs"
        Effect   = "Allow"
        Action   = "iot:Subscribe"
        Resource = local.remote_subscribe
      },
      {
        Sid      = "ReceiveOnlyItsOwnShadowAndJobs"
        Effect   = "Allow"
        Action   = "iot:Receive"
        Resource = local.remote_receive
      },
    ],
    var.command_topics ? [
      {
        Sid      = "SubscribeOnlyToItsOwnCommands"
        Effect   = "Allow"
        Action   = "iot:Subscribe"
        Resource = "${local.arn_prefix}:topicfilter/${local.command_prefix}/*"
      },
      {
        Sid      = "ReceiveOnlyItsOwnCommands"
        Effect   = "Allow"
        Action   = "iot:Receive"
        Resource = "${local.arn_prefix}:topic/${local.command_prefix}/*"
      },
    ] : [],
  )
}

resource "aws_iot_thing" "rig" {
  for_each = toset(var.rigs)
  name     = each.key
  attributes = {
    project = var.name_prefix
  }
}

resource "aws_iot_policy" "rig" {
  name   = "${var.name_prefix}-rig"
  policy = jsonencode({ Version = "2012-10-17", Statement = local.statements })
  tags   = var.tags
}

# A certificate from the device's CSR: AWS signs the public key, the private key stays on the device.
resource "aws_iot_certificate" "rig" {
  for_each = var.csrs
  csr      = each.value
  active   = true
}

resource "aws_iot_policy_attachment" "rig" {
  for_each = var.csrs
  policy   = aws_iot_policy.rig.name
  target   = aws_iot_certificate.rig[each.key].arn
}

resource "aws_iot_thing_principal_attachment" "rig" {
  for_each  = var.csrs
  thing     = aws_iot_thing.rig[each.key].name
  principal = aws_iot_certificate.rig[each.key].arn
}
