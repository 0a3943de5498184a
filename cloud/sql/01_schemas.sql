-- battery-twin warehouse, stage 1 of 3: schemas.
--
-- These files are Terraform templates: the placeholders (schema, kinesis_schema, stream_name,
-- streaming_role_arn, each in a dollar-brace) are filled in by terraform/modules/warehouse, which runs every
-- statement through the Redshift Data API, one stage after the other. A statement ends with ';' at the end of a line (the module
-- splits on that), so keep semicolons out of the middle of a line.

CREATE SCHEMA IF NOT EXISTS ${schema};

-- Streaming ingestion: Redshift reads the Kinesis data stream itself with this IAM role. Nothing connects *to*
-- the warehouse, so the workgroup stays private (publicly_accessible = false).
CREATE EXTERNAL SCHEMA IF NOT EXISTS ${kinesis_schema} FROM KINESIS IAM_ROLE '${streaming_role_arn}';
