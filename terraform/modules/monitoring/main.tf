# Alarms -> SNS, and a fleet dashboard.
#
# Cell alarms are counted from agent events: the events rule writes each event as one log event, and metric
# filters count them by kind (an IoT cloudwatch_metric action sees one message, not the events inside it, so
# it could not count them).
#
# Silent rigs: every agent sends a health heartbeat (uplink.health_heartbeat_s, 150 s by default) that the health
# rule writes to the health log group with the rig taken from the topic. A Contributor Insights rule counts the
# rigs whose health shows readings flowing (readings_rate_s > 0), and one fleet alarm fires when, over half of
# silent_minutes, fewer rigs than deployed did: a rig that stops sending readings, or stops sending anything, raises
# it between silent_minutes/2 and silent_minutes after its last good heartbeat (plus CloudWatch's evaluation delay,
# about a minute). Its cost does not grow with the fleet; which rig is silent: the dashboard's "last health per rig".
# per_rig_silent_alarms = true adds the former alarm per rig (needs the ingest module's per-rig metric
# readings_rate_s; each rig then costs a custom metric, an alarm and a PutMetricData request per heartbeat).
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name

  event_alarms = {
    over_temperature = {
      pattern     = "{ ($.kind = \"alarm.over_temperature\") || (($.kind = \"validate.out_of_range\") && ($.data.field = \"temperature_c\") && ($.data.value > ${var.cell_temperature_max_c})) }"
      threshold   = 1
      period      = 60
      description = "A cell is over temperature (alarm.over_temperature, or a temperature reading above ${var.cell_temperature_max_c} degC). Which rig and cell: the events log group."
    }
    over_voltage = {
      pattern     = "{ ($.kind = \"alarm.over_voltage\") || (($.kind = \"validate.out_of_range\") && ($.data.field = \"voltage_v\") && ($.data.value > ${var.cell_voltage_max_v})) }"
      threshold   = 1
      period      = 60
      description = "A cell is over voltage (alarm.over_voltage, or a voltage reading above ${var.cell_voltage_max_v} V)."
    }
    under_voltage = {
      pattern     = "{ ($.kind = \"alarm.under_voltage\") || (($.kind = \"validate.out_of_range\") && ($.data.field = \"voltage_v\") && ($.data.value < ${var.cell_voltage_min_v})) }"
      threshold   = 1
      period      = 60
      description = "A cell is under voltage (alarm.under_voltage, or a voltage reading below ${var.cell_voltage_min_v} V)."
    }
    anomaly = {
      pattern     = "{ ($.kind = \"anomaly.*\") || ($.kind = \"alarm.anomaly\") }"
      threshold   = var.anomaly_threshold
      period      = var.anomaly_period_s
      description = "${var.anomaly_threshold} or more anomaly events across the fleet within ${var.anomaly_period_s} s."
    }
  }
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "AccountOwnsTheTopic"
    actions   = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:ListSubscriptionsByTopic"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchAlarmsAndEventBridgePublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.key
}

# ---------------------------------------------------------------------------------------------- cell alarms
resource "aws_cloudwatch_log_metric_filter" "event" {
  for_each       = local.event_alarms
  name           = "${var.name_prefix}-${each.key}"
  log_group_name = var.events_log_group_name
  pattern        = each.value.pattern

  metric_transformation {
    name      = each.key
    namespace = var.event_metric_namespace
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "event" {
  for_each            = local.event_alarms
  alarm_name          = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  alarm_description   = each.value.description
  namespace           = var.event_metric_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.event[each.key].metric_transformation[0].name
  statistic           = "Sum"
  period              = each.value.period
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# ---------------------------------------------------------------------------------------------- rig silent
resource "aws_cloudwatch_contributor_insight_rule" "rigs_reporting" {
  rule_name  = "${var.name_prefix}-rigs-reporting"
  rule_state = "ENABLED"
  rule_definition = jsonencode({
    Schema        = { Name = "CloudWatchLogRule", Version = 1 }
    LogGroupNames = [var.health_log_group_name]
    LogFormat     = "JSON"
    Contribution = {
      Keys    = ["$.rig"]
      Filters = [{ Match = "$.readings_rate_s", GreaterThan = 0 }]
    }
    AggregateOn = "Count"
  })
  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rigs_silent" {
  alarm_name          = "${var.name_prefix}-rigs-silent"
  alarm_description   = "Fewer than the ${length(var.rigs)} deployed rigs sent readings in the last ${var.silent_minutes / 2} minutes. Which rig: the dashboard's \"last health per rig\" (health log group ${var.health_log_group_name})."
  comparison_operator = "LessThanThreshold"
  threshold           = length(var.rigs)
  evaluation_periods  = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "reporting"
    label       = "rigs sending readings"
    expression  = "INSIGHT_RULE_METRIC('${aws_cloudwatch_contributor_insight_rule.rigs_reporting.rule_name}', 'UniqueContributors')"
    period      = local.silent_window_s
    return_data = true
  }
}

# Fleet-wide health figures from the same records (one custom metric each, not one per rig).
resource "aws_cloudwatch_log_metric_filter" "fleet_health" {
  for_each       = toset(var.fleet_health_metrics)
  name           = "${var.name_prefix}-fleet-${each.key}"
  log_group_name = var.health_log_group_name
  pattern        = "{ $.${each.key} >= 0 }"

  metric_transformation {
    name      = each.key
    namespace = var.fleet_metric_namespace
    value     = "$.${each.key}"
  }
}

resource "aws_cloudwatch_metric_alarm" "rig_silent" {
  for_each            = var.per_rig_silent_alarms ? toset(var.rigs) : toset([])
  alarm_name          = "${var.name_prefix}-silent-${each.key}"
  alarm_description   = "Rig ${each.key} has sent no readings (or no health message) for ${var.silent_minutes} minutes."
  namespace           = var.health_metric_namespace
  metric_name         = "${each.key}.readings_rate_s"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.silent_minutes
  threshold           = 0
  comparison_operator = "LessThanOrEqualToThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# ---------------------------------------------------------------------------------------------- failed deliveries
resource "aws_cloudwatch_event_rule" "delivery_failed" {
  name        = "${var.name_prefix}-rule-delivery-failed"
  description = "An IoT rule action failed and its error action saved the message to the error bucket."
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail        = { bucket = { name = [var.error_bucket_name] } }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "delivery_failed" {
  rule = aws_cloudwatch_event_rule.delivery_failed.name
  arn  = aws_sns_topic.alarms.arn
}

# ---------------------------------------------------------------------------------------------- dashboard
locals {
  # The fleet alarm counts rigs over half the silent window, so a rig missing a whole window is silent for at most
  # silent_minutes; heartbeats every silent_minutes/4 or more often leave every window two chances.
  silent_window_s = var.silent_minutes * 30
  per_rig = { for f in var.health_metric_fields :
    f => [for r in var.rigs : [var.health_metric_namespace, "${r}.${f}", { label = r }]]
  }
  health_widget = { for f, metrics in local.per_rig : f => {
    type   = "metric"
    width  = 12
    height = 6
    properties = {
      title   = f
      region  = local.region
      view    = "timeSeries"
      stat    = "Maximum"
      period  = 60
      metrics = metrics
    }
  } }
}

resource "aws_cloudwatch_dashboard" "fleet" {
  dashboard_name = "${var.name_prefix}-fleet"
  dashboard_body = jsonencode({
    widgets = concat(
      [
        {
          type   = "alarm"
          width  = 24
          height = 4
          properties = {
            title = "Alarms"
            alarms = concat(
              [for a in aws_cloudwatch_metric_alarm.event : a.arn],
              [aws_cloudwatch_metric_alarm.rigs_silent.arn],
              [for a in aws_cloudwatch_metric_alarm.rig_silent : a.arn],
            )
          }
        },
        {
          type   = "metric"
          width  = 12
          height = 6
          properties = {
            title       = "Rigs sending readings (of ${length(var.rigs)})"
            region      = local.region
            view        = "timeSeries"
            period      = local.silent_window_s
            metrics     = [[{ expression = "INSIGHT_RULE_METRIC('${aws_cloudwatch_contributor_insight_rule.rigs_reporting.rule_name}', 'UniqueContributors')", label = "rigs", id = "r" }]]
            annotations = { horizontal = [{ value = length(var.rigs), label = "deployed" }] }
          }
        },
        {
          type   = "metric"
          width  = 12
          height = 6
          properties = {
            title   = "Fleet health (worst rig)"
            region  = local.region
            view    = "timeSeries"
            stat    = "Maximum"
            period  = 300
            metrics = [for f in var.fleet_health_metrics : [var.fleet_metric_namespace, f]]
          }
        },
        {
          type   = "log"
          width  = 24
          height = 6
          properties = {
            title  = "Last health per rig"
            region = local.region
            view   = "table"
            query  = "SOURCE '${var.health_log_group_name}' | stats max(@timestamp) as last_seen, latest(readings_rate_s) as readings_per_s, latest(oldest_unsent_age_s) as oldest_unsent_s, latest(uplink_state) as link by rig | sort last_seen asc"
          }
        },
      ],
      [for f in var.health_metric_fields : local.health_widget[f]],
      [
        {
          type   = "metric"
          width  = 12
          height = 6
          properties = {
            title   = "Cell events (fleet)"
            region  = local.region
            view    = "timeSeries"
            stat    = "Sum"
            period  = 60
            metrics = [for k in keys(local.event_alarms) : [var.event_metric_namespace, k]]
          }
        },
        {
          type   = "metric"
          width  = 12
          height = 6
          properties = {
            title  = "Landing stream: records in, and how far Redshift lags (ms)"
            region = local.region
            view   = "timeSeries"
            period = 60
            metrics = [
              ["AWS/Kinesis", "IncomingRecords", "StreamName", var.stream_name, { stat = "Sum" }],
              ["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", var.stream_name, { stat = "Maximum", yAxis = "right" }],
            ]
          }
        },
        {
          type   = "log"
          width  = 24
          height = 6
          properties = {
            title  = "Latest alarm and critical events"
            region = local.region
            view   = "table"
            query  = "SOURCE '${var.events_log_group_name}' | fields @timestamp, rig, cell, kind, level, message | filter level in ['alarm', 'critical'] | sort @timestamp desc | limit 50"
          }
        },
      ],
    )
  })
}
