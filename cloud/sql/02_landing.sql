-- battery-twin warehouse, stage 2 of 3: the landing materialized view (streaming ingestion).
--
-- One Kinesis record is one MQTT message (telemetry, cycles or events) as the IoT rule wrote it: the agent's
-- JSON envelope plus topic_rig (the thing name taken from the topic, which the IoT policy ties to the
-- certificate), topic and received_ms (rules engine time). The record is parsed into SUPER once, here; the
-- views in 03_views.sql unnest it into one row per reading / cycle / event with PartiQL.
--
-- Stream records expire after the stream's retention (24 h by default): the materialized view is what keeps
-- them, so it must refresh at least that often. With AUTO REFRESH YES Redshift refreshes within seconds of new
-- data; with NO, the warehouse module's schedule runs REFRESH MATERIALIZED VIEW every refresh_minutes.
-- Changing this statement makes Terraform run it again, which fails while the view exists: dropping it would
-- drop the data, so a change here is a migration to do by hand (see terraform/README.md).

CREATE MATERIALIZED VIEW ${schema}.landing AUTO REFRESH ${auto_refresh} AS
SELECT approximate_arrival_timestamp AS arrival_ts,
       partition_key,
       shard_id,
       sequence_number,
       refresh_time,
       JSON_PARSE(kinesis_data) AS payload
FROM ${kinesis_schema}."${stream_name}"
WHERE CAN_JSON_PARSE(kinesis_data);
