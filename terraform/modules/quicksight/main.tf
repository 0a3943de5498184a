# QuickSight reaches the private workgroup through a VPC connection: network interfaces in the workgroup's
# subnets. One data source, and one data set per dashboard view (the qs_* views of cloud/sql/03_views.sql).
# The dashboards themselves are built in QuickSight from these data sets (docs/quicksight.md): the provider's
# analysis and dashboard resources have open perpetual-diff bugs.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  ec2_arn    = "arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${local.account_id}"

  # view -> columns (name -> QuickSight type). tests/cloud/test_contracts.py checks them against the views.
  data_sets = {
    live_readings = {
      view = "qs_live_readings"
      columns = {
        rig           = "STRING"
        cell          = "STRING"
        ts_utc        = "DATETIME"
        voltage_v     = "DECIMAL"
        current_a     = "DECIMAL"
        temperature_c = "DECIMAL"
        flags         = "INTEGER"
      }
    }
    capacity = {
      view = "qs_capacity"
      columns = {
        rig                  = "STRING"
        cell                 = "STRING"
        cycle                = "INTEGER"
        ts_utc               = "DATETIME"
        capacity_ah          = "DECIMAL"
        soh                  = "DECIMAL"
        coulombic_efficiency = "DECIMAL"
        dc_resistance_ohm    = "DECIMAL"
        temperature_mean_c   = "DECIMAL"
        temperature_max_c    = "DECIMAL"
      }
    }
    capacity_fade = {
      view = "qs_capacity_fade"
      columns = {
        rig                         = "STRING"
        cell                        = "STRING"
        forecast_from_cycle         = "INTEGER"
        target_cycle                = "INTEGER"
        horizon_cycles              = "INTEGER"
        predicted_capacity_ah       = "DECIMAL"
        predicted_capacity_lower_ah = "DECIMAL"
        predicted_capacity_upper_ah = "DECIMAL"
        actual_capacity_ah          = "DECIMAL"
        error_ah                    = "DECIMAL"
        actual_within_band          = "INTEGER"
        predicted_eol_cycle         = "DECIMAL"
        predicted_eol_cycle_lower   = "DECIMAL"
        predicted_eol_cycle_upper   = "DECIMAL"
        predicted_cycle_life        = "DECIMAL"
        model_version               = "STRING"
      }
    }
    temperature_distribution = {
      view = "qs_temperature_distribution"
      columns = {
        rig               = "STRING"
        cell              = "STRING"
        cycle             = "INTEGER"
        temperature_bin_c = "INTEGER"
        readings          = "INTEGER"
      }
    }
  }

  data_source_actions = [
    "quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions", "quicksight:PassDataSource",
    "quicksight:UpdateDataSource", "quicksight:DeleteDataSource", "quicksight:UpdateDataSourcePermissions",
  ]
  data_set_actions = [
    "quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
    "quicksight:DescribeIngestion", "quicksight:ListIngestions", "quicksight:UpdateDataSet",
    "quicksight:DeleteDataSet", "quicksight:CreateIngestion", "quicksight:CancelIngestion",
    "quicksight:UpdateDataSetPermissions",
  ]
}

# ---------------------------------------------------------------------------------------------- network
resource "aws_security_group" "quicksight" {
  name        = "${var.name_prefix}-quicksight"
  description = "QuickSight VPC connection: to the Redshift workgroup only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "to_redshift" {
  security_group_id            = aws_security_group.quicksight.id
  description                  = "Redshift"
  ip_protocol                  = "tcp"
  from_port                    = var.redshift_port
  to_port                      = var.redshift_port
  referenced_security_group_id = var.redshift_security_group_id
}

# QuickSight's network interfaces are not stateful: replies from Redshift need an inbound rule of their own,
# on all TCP ports as AWS documents it for VPC connections, from the workgroup's security group only.
resource "aws_vpc_security_group_ingress_rule" "from_redshift" {
  # checkov:skip=CKV_AWS_24:Source is the Redshift workgroup's security group, not 0.0.0.0/0 (the check reads the port range only); AWS documents all-TCP inbound from the data source's group for QuickSight VPC connections.
  # checkov:skip=CKV_AWS_25:Source is the Redshift workgroup's security group, not 0.0.0.0/0 (the check reads the port range only); AWS documents all-TCP inbound from the data source's group for QuickSight VPC connections.
  # checkov:skip=CKV_AWS_260:Source is the Redshift workgroup's security group, not 0.0.0.0/0 (the check reads the port range only); AWS documents all-TCP inbound from the data source's group for QuickSight VPC connections.
  security_group_id            = aws_security_group.quicksight.id
  description                  = "Replies from Redshift (QuickSight interfaces do not track connections)"
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  referenced_security_group_id = var.redshift_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "redshift_from_quicksight" {
  security_group_id            = var.redshift_security_group_id
  description                  = "Redshift from QuickSight"
  ip_protocol                  = "tcp"
  from_port                    = var.redshift_port
  to_port                      = var.redshift_port
  referenced_security_group_id = aws_security_group.quicksight.id
}

data "aws_iam_policy_document" "vpc_connection_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["quicksight.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "vpc_connection" {
  name               = "${var.name_prefix}-quicksight-vpc"
  assume_role_policy = data.aws_iam_policy_document.vpc_connection_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "vpc_connection" {
  statement {
    sid     = "CreateInterfacesInTheseSubnetsWithThisGroup"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["${local.ec2_arn}:network-interface/*", "${local.ec2_arn}:security-group/${aws_security_group.quicksight.id}"],
      [for s in var.subnet_ids : "${local.ec2_arn}:subnet/${s}"],
    )
  }
  statement {
    sid       = "ManageItsInterfaces"
    actions   = ["ec2:ModifyNetworkInterfaceAttribute", "ec2:DeleteNetworkInterface"]
    resources = ["${local.ec2_arn}:network-interface/*", "${local.ec2_arn}:security-group/${aws_security_group.quicksight.id}"]
  }
  statement {
    sid       = "Describe"
    actions   = ["ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeNetworkInterfaces"]
    resources = ["*"] # Describe actions have no resource-level permissions
  }
}

resource "aws_iam_role_policy" "vpc_connection" {
  name   = "network-interfaces"
  role   = aws_iam_role.vpc_connection.id
  policy = data.aws_iam_policy_document.vpc_connection.json
}

resource "aws_quicksight_vpc_connection" "this" {
  vpc_connection_id  = "${var.name_prefix}-redshift"
  name               = "${var.name_prefix} Redshift"
  role_arn           = aws_iam_role.vpc_connection.arn
  security_group_ids = [aws_security_group.quicksight.id]
  subnet_ids         = var.subnet_ids
  tags               = var.tags
}

# ---------------------------------------------------------------------------------------------- data
resource "aws_quicksight_data_source" "redshift" {
  data_source_id = "${var.name_prefix}-redshift"
  name           = "${var.name_prefix} Redshift"
  type           = "REDSHIFT"

  parameters {
    redshift {
      host     = var.redshift_host
      port     = var.redshift_port
      database = var.database
    }
  }

  credentials {
    secret_arn = var.credentials_secret_arn
  }

  ssl_properties {
    disable_ssl = false
  }

  vpc_connection_properties {
    vpc_connection_arn = aws_quicksight_vpc_connection.this.arn
  }

  dynamic "permission" {
    for_each = toset(var.principal_arns)
    content {
      principal = permission.key
      actions   = local.data_source_actions
    }
  }

  tags = var.tags
}

resource "aws_quicksight_data_set" "view" {
  for_each    = local.data_sets
  data_set_id = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  name        = "${var.name_prefix} ${replace(each.key, "_", " ")}"
  import_mode = var.import_mode

  physical_table_map {
    physical_table_map_id = each.key
    relational_table {
      data_source_arn = aws_quicksight_data_source.redshift.arn
      schema          = var.schema
      name            = each.value.view
      dynamic "input_columns" {
        for_each = each.value.columns
        content {
          name = input_columns.key
          type = input_columns.value
        }
      }
    }
  }

  dynamic "permissions" {
    for_each = toset(var.principal_arns)
    content {
      principal = permissions.key
      actions   = local.data_set_actions
    }
  }

  tags = var.tags
}
