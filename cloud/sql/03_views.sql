-- battery-twin warehouse, stage 3 of 3: typed views over the landing view, deduplicated on (rig, seq).
--
-- All views are late-binding (WITH NO SCHEMA BINDING), so they can be created in any order and survive a
-- rebuild of what they read. Column names and types follow the JSON Schemas in agent/schemas/, and
-- tests/cloud/test_contracts.py checks that they do (one column per schema field, compatible type).
--
-- rig is topic_rig, the thing name from the MQTT topic: the IoT policy lets a certificate publish only under
-- its own thing name, so that value is authenticated. A message whose payload names another rig is left out.
-- Delivery is at-least-once: the *_all views keep every copy, the plain views keep the first copy to arrive
-- of each (rig, seq) and are what dashboards read.

-- Telemetry, both envelopes. v2 ("compact", the agent's default) is rows of scaled integers:
-- [cell index, seq - seq0, ts - ts0, V / scale[3], I / scale[4], T / scale[5], flags], unnested with constant
-- subscripts. The cell index is matched to the position in 'cells' with PartiQL's AT. A value whose MISSING
-- flag is set (1 voltage, 2 current, 4 temperature) is NULL. v1 ("records") is flat records. Rows read from a
-- cycler's file carry its cycle and step numbers (v2: x[7], x[8], -1 for none; v1: cycle_no, step_no); they are
-- NULL for other rows (a 7-wide row's x[7] is NULL in PartiQL's lax mode).
CREATE OR REPLACE VIEW ${schema}.readings_all AS
SELECT CAST(l.payload.topic_rig AS VARCHAR(128)) AS rig,
       CAST(c AS VARCHAR(256)) AS cell,
       CAST(l.payload.seq0 AS BIGINT) + CAST(x[1] AS BIGINT) AS seq,
       CAST(l.payload.ts0 AS BIGINT) + CAST(x[2] AS BIGINT) AS ts,
       CAST(CASE WHEN (CAST(x[6] AS INTEGER) & 1) = 0
                 THEN CAST(x[3] AS DOUBLE PRECISION) * CAST(l.payload.scale[3] AS DOUBLE PRECISION) END
            AS DOUBLE PRECISION) AS voltage_v,
       CAST(CASE WHEN (CAST(x[6] AS INTEGER) & 2) = 0
                 THEN CAST(x[4] AS DOUBLE PRECISION) * CAST(l.payload.scale[4] AS DOUBLE PRECISION) END
            AS DOUBLE PRECISION) AS current_a,
       CAST(CASE WHEN (CAST(x[6] AS INTEGER) & 4) = 0
                 THEN CAST(x[5] AS DOUBLE PRECISION) * CAST(l.payload.scale[5] AS DOUBLE PRECISION) END
            AS DOUBLE PRECISION) AS temperature_c,
       CAST(x[6] AS INTEGER) AS flags,
       CAST(CASE WHEN CAST(x[7] AS INTEGER) >= 0 THEN CAST(x[7] AS INTEGER) END AS INTEGER) AS cycle_no,
       CAST(CASE WHEN CAST(x[8] AS INTEGER) >= 0 THEN CAST(x[8] AS INTEGER) END AS INTEGER) AS step_no,
       CAST(2 AS SMALLINT) AS envelope_version,
       l.arrival_ts
FROM ${schema}.landing AS l, l.payload.r AS x, l.payload.cells AS c AT ci
WHERE l.payload."type" = 'telemetry'
  AND l.payload.v = 2
  AND CAST(x[0] AS INTEGER) = ci
  AND CAST(l.payload.rig AS VARCHAR(128)) = CAST(l.payload.topic_rig AS VARCHAR(128))
UNION ALL
SELECT CAST(l.payload.topic_rig AS VARCHAR(128)) AS rig,
       CAST(rec.cell AS VARCHAR(256)) AS cell,
       CAST(rec.seq AS BIGINT) AS seq,
       CAST(rec.ts AS BIGINT) AS ts,
       CAST(rec.voltage_v AS DOUBLE PRECISION) AS voltage_v,
       CAST(rec.current_a AS DOUBLE PRECISION) AS current_a,
       CAST(rec.temperature_c AS DOUBLE PRECISION) AS temperature_c,
       CAST(rec.flags AS INTEGER) AS flags,
       CAST(rec.cycle_no AS INTEGER) AS cycle_no,
       CAST(rec.step_no AS INTEGER) AS step_no,
       CAST(1 AS SMALLINT) AS envelope_version,
       l.arrival_ts
FROM ${schema}.landing AS l, l.payload.records AS rec
WHERE l.payload."type" = 'telemetry'
  AND l.payload.v = 1
  AND CAST(l.payload.rig AS VARCHAR(128)) = CAST(l.payload.topic_rig AS VARCHAR(128))
WITH NO SCHEMA BINDING;

-- One row per reading: the first copy of each (rig, seq) to arrive.
CREATE OR REPLACE VIEW ${schema}.readings AS
SELECT rig, cell, seq, ts,
       TIMESTAMP 'epoch' + ts / 1000.0 * INTERVAL '1 second' AS ts_utc,
       voltage_v, current_a, temperature_c, flags, cycle_no, step_no, arrival_ts
FROM (SELECT r.rig, r.cell, r.seq, r.ts, r.voltage_v, r.current_a, r.temperature_c, r.flags, r.cycle_no,
             r.step_no, r.arrival_ts,
             ROW_NUMBER() OVER (PARTITION BY r.rig, r.seq ORDER BY r.arrival_ts) AS copy_rank
      FROM ${schema}.readings_all AS r) AS d
WHERE d.copy_rank = 1
WITH NO SCHEMA BINDING;

-- Per-cycle summaries with the models' predictions (cycles.v1). doc keeps the whole item, so a field added to
-- the schema is reachable (doc.new_field) before this view grows a column for it.
CREATE OR REPLACE VIEW ${schema}.cycles_all AS
SELECT CAST(l.payload.topic_rig AS VARCHAR(128)) AS rig,
       CAST(cy.seq AS BIGINT) AS seq,
       CAST(cy.ts AS BIGINT) AS ts,
       CAST(cy.cell AS VARCHAR(256)) AS cell,
       CAST(cy.cycle AS INTEGER) AS cycle,
       CAST(cy.start_ts AS BIGINT) AS start_ts,
       CAST(cy.duration_s AS DOUBLE PRECISION) AS duration_s,
       CAST(cy.charge_ah AS DOUBLE PRECISION) AS charge_ah,
       CAST(cy.discharge_ah AS DOUBLE PRECISION) AS discharge_ah,
       CAST(cy.charge_wh AS DOUBLE PRECISION) AS charge_wh,
       CAST(cy.discharge_wh AS DOUBLE PRECISION) AS discharge_wh,
       CAST(cy.coulombic_efficiency AS DOUBLE PRECISION) AS coulombic_efficiency,
       CAST(cy.temperature_mean_c AS DOUBLE PRECISION) AS temperature_mean_c,
       CAST(cy.temperature_max_c AS DOUBLE PRECISION) AS temperature_max_c,
       CAST(cy.dc_resistance_ohm AS DOUBLE PRECISION) AS dc_resistance_ohm,
       CAST(cy.soh AS DOUBLE PRECISION) AS soh,
       cy.predicted_capacity_ah AS predicted_capacity_ah,
       cy.predicted_capacity_lower_ah AS predicted_capacity_lower_ah,
       cy.predicted_capacity_upper_ah AS predicted_capacity_upper_ah,
       CAST(cy.predicted_eol_cycle AS DOUBLE PRECISION) AS predicted_eol_cycle,
       CAST(cy.predicted_eol_cycle_lower AS DOUBLE PRECISION) AS predicted_eol_cycle_lower,
       CAST(cy.predicted_eol_cycle_upper AS DOUBLE PRECISION) AS predicted_eol_cycle_upper,
       CAST(cy.predicted_cycle_life AS DOUBLE PRECISION) AS predicted_cycle_life,
       CAST(cy.predicted_cycle_life_lower AS DOUBLE PRECISION) AS predicted_cycle_life_lower,
       CAST(cy.predicted_cycle_life_upper AS DOUBLE PRECISION) AS predicted_cycle_life_upper,
       CAST(cy.model_version AS VARCHAR(256)) AS model_version,
       CAST(cy.soc_end AS DOUBLE PRECISION) AS soc_end,
       CAST(cy.eol_capacity_ah AS DOUBLE PRECISION) AS eol_capacity_ah,
       CAST(cy.cycle_life_model_version AS VARCHAR(256)) AS cycle_life_model_version,
       CAST(cy.cycle_life_note AS VARCHAR(512)) AS cycle_life_note,
       cy.qd_ah AS qd_ah,
       cy.qd_grid AS qd_grid,
       cy AS doc,
       l.arrival_ts
FROM ${schema}.landing AS l, l.payload.cycles AS cy
WHERE l.payload."type" = 'cycles'
  AND CAST(l.payload.rig AS VARCHAR(128)) = CAST(l.payload.topic_rig AS VARCHAR(128))
WITH NO SCHEMA BINDING;

CREATE OR REPLACE VIEW ${schema}.cycles AS
SELECT rig, seq, ts, cell, cycle, start_ts, duration_s, charge_ah, discharge_ah, charge_wh, discharge_wh,
       coulombic_efficiency, temperature_mean_c, temperature_max_c, dc_resistance_ohm, soh,
       predicted_capacity_ah, predicted_capacity_lower_ah, predicted_capacity_upper_ah, predicted_eol_cycle,
       predicted_eol_cycle_lower, predicted_eol_cycle_upper, predicted_cycle_life, predicted_cycle_life_lower,
       predicted_cycle_life_upper, model_version, soc_end,
       eol_capacity_ah, cycle_life_model_version, cycle_life_note, qd_ah, qd_grid, doc, arrival_ts
FROM (SELECT c.rig, c.seq, c.ts, c.cell, c.cycle, c.start_ts, c.duration_s, c.charge_ah, c.discharge_ah,
             c.charge_wh, c.discharge_wh, c.coulombic_efficiency, c.temperature_mean_c, c.temperature_max_c,
             c.dc_resistance_ohm, c.soh, c.predicted_capacity_ah, c.predicted_capacity_lower_ah,
             c.predicted_capacity_upper_ah, c.predicted_eol_cycle, c.predicted_eol_cycle_lower,
             c.predicted_eol_cycle_upper, c.predicted_cycle_life, c.predicted_cycle_life_lower,
             c.predicted_cycle_life_upper, c.model_version, c.soc_end, c.eol_capacity_ah,
             c.cycle_life_model_version, c.cycle_life_note, c.qd_ah, c.qd_grid, c.doc, c.arrival_ts,
             ROW_NUMBER() OVER (PARTITION BY c.rig, c.seq ORDER BY c.arrival_ts) AS copy_rank
      FROM ${schema}.cycles_all AS c) AS d
WHERE d.copy_rank = 1
WITH NO SCHEMA BINDING;

-- The SOH model's capacity forecast, one row per forecast step: predicted_capacity_ah[k] is the capacity
-- predicted for cycle + k + 1, with its 10-90 % band (predicted_capacity_lower_ah[k], _upper_ah[k]). Each array
-- is unnested on its own (PartiQL's AT gives the step) and the bounds are joined to the forecast on the step.
CREATE OR REPLACE VIEW ${schema}.predictions AS
SELECT f.rig, f.seq, f.cell, f.forecast_from_cycle, f.target_cycle, f.horizon_cycles, f.predicted_capacity_ah,
       lb.predicted_capacity_lower_ah, ub.predicted_capacity_upper_ah,
       f.predicted_eol_cycle, f.predicted_eol_cycle_lower, f.predicted_eol_cycle_upper,
       f.predicted_cycle_life, f.model_version, f.ts
FROM (SELECT c.rig, c.seq, c.cell, c.cycle AS forecast_from_cycle,
             c.cycle + CAST(k AS INTEGER) + 1 AS target_cycle,
             CAST(k AS INTEGER) + 1 AS horizon_cycles,
             CAST(p AS DOUBLE PRECISION) AS predicted_capacity_ah,
             c.predicted_eol_cycle, c.predicted_eol_cycle_lower, c.predicted_eol_cycle_upper,
             c.predicted_cycle_life, c.model_version, c.ts
      FROM ${schema}.cycles AS c, c.predicted_capacity_ah AS p AT k) AS f
LEFT JOIN (SELECT c.rig, c.seq, CAST(k AS INTEGER) + 1 AS horizon_cycles,
                  CAST(v AS DOUBLE PRECISION) AS predicted_capacity_lower_ah
           FROM ${schema}.cycles AS c, c.predicted_capacity_lower_ah AS v AT k) AS lb
       ON lb.rig = f.rig AND lb.seq = f.seq AND lb.horizon_cycles = f.horizon_cycles
LEFT JOIN (SELECT c.rig, c.seq, CAST(k AS INTEGER) + 1 AS horizon_cycles,
                  CAST(v AS DOUBLE PRECISION) AS predicted_capacity_upper_ah
           FROM ${schema}.cycles AS c, c.predicted_capacity_upper_ah AS v AT k) AS ub
       ON ub.rig = f.rig AND ub.seq = f.seq AND ub.horizon_cycles = f.horizon_cycles
WITH NO SCHEMA BINDING;

-- Events (events.v1): alarms, anomalies, driver faults, store incidents.
CREATE OR REPLACE VIEW ${schema}.events_all AS
SELECT CAST(l.payload.topic_rig AS VARCHAR(128)) AS rig,
       CAST(e.seq AS BIGINT) AS seq,
       CAST(e.ts AS BIGINT) AS ts,
       CAST(e.kind AS VARCHAR(64)) AS kind,
       CAST(e.level AS VARCHAR(16)) AS level,
       CAST(e.source AS VARCHAR(512)) AS source,
       CAST(e.cell AS VARCHAR(256)) AS cell,
       CAST(e.message AS VARCHAR(8000)) AS message,
       e.data AS data,
       l.arrival_ts
FROM ${schema}.landing AS l, l.payload.events AS e
WHERE l.payload."type" = 'events'
  AND CAST(l.payload.rig AS VARCHAR(128)) = CAST(l.payload.topic_rig AS VARCHAR(128))
WITH NO SCHEMA BINDING;

CREATE OR REPLACE VIEW ${schema}.events AS
SELECT rig, seq, ts, TIMESTAMP 'epoch' + ts / 1000.0 * INTERVAL '1 second' AS ts_utc,
       kind, level, source, cell, message, data, arrival_ts
FROM (SELECT e.rig, e.seq, e.ts, e.kind, e.level, e.source, e.cell, e.message, e.data, e.arrival_ts,
             ROW_NUMBER() OVER (PARTITION BY e.rig, e.seq ORDER BY e.arrival_ts) AS copy_rank
      FROM ${schema}.events_all AS e) AS d
WHERE d.copy_rank = 1
WITH NO SCHEMA BINDING;

-- The four QuickSight data sets (docs/quicksight.md builds the dashboards from them).
-- 1. Live voltage, current and temperature: the last 24 hours, deduplicated within that window.
CREATE OR REPLACE VIEW ${schema}.qs_live_readings AS
SELECT rig, cell, TIMESTAMP 'epoch' + ts / 1000.0 * INTERVAL '1 second' AS ts_utc,
       voltage_v, current_a, temperature_c, flags
FROM (SELECT r.rig, r.cell, r.ts, r.voltage_v, r.current_a, r.temperature_c, r.flags,
             ROW_NUMBER() OVER (PARTITION BY r.rig, r.seq ORDER BY r.arrival_ts) AS copy_rank
      FROM ${schema}.readings_all AS r
      WHERE r.ts >= DATEDIFF(millisecond, TIMESTAMP 'epoch', DATEADD(hour, -24, GETDATE()))) AS d
WHERE d.copy_rank = 1
WITH NO SCHEMA BINDING;

-- 2. Capacity over time and cycle.
CREATE OR REPLACE VIEW ${schema}.qs_capacity AS
SELECT rig, cell, cycle, TIMESTAMP 'epoch' + ts / 1000.0 * INTERVAL '1 second' AS ts_utc,
       discharge_ah AS capacity_ah, soh, coulombic_efficiency, dc_resistance_ohm, temperature_mean_c,
       temperature_max_c
FROM ${schema}.cycles
WITH NO SCHEMA BINDING;

-- 3. Predicted against actual capacity fade: each forecast step with its 10-90 % band next to the capacity measured
-- at that cycle (NULL until the cell gets there); actual_within_band is 1 where the band held it (its mean over
-- many steps is the band's coverage, 0.8 for a calibrated band).
CREATE OR REPLACE VIEW ${schema}.qs_capacity_fade AS
SELECT p.rig, p.cell, p.forecast_from_cycle, p.target_cycle, p.horizon_cycles, p.predicted_capacity_ah,
       p.predicted_capacity_lower_ah, p.predicted_capacity_upper_ah,
       a.discharge_ah AS actual_capacity_ah,
       p.predicted_capacity_ah - a.discharge_ah AS error_ah,
       CAST(CASE WHEN a.discharge_ah IS NULL THEN NULL
                 WHEN a.discharge_ah BETWEEN p.predicted_capacity_lower_ah AND p.predicted_capacity_upper_ah THEN 1
                 ELSE 0 END AS INTEGER) AS actual_within_band,
       p.predicted_eol_cycle, p.predicted_eol_cycle_lower, p.predicted_eol_cycle_upper,
       p.predicted_cycle_life, p.model_version
FROM ${schema}.predictions AS p
LEFT JOIN ${schema}.cycles AS a
       ON a.rig = p.rig AND a.cell = p.cell AND a.cycle = p.target_cycle
WITH NO SCHEMA BINDING;

-- 4. Temperature distribution across cycles: readings per 1 degC bin, per cell and cycle.
CREATE OR REPLACE VIEW ${schema}.qs_temperature_distribution AS
SELECT c.rig, c.cell, c.cycle,
       CAST(FLOOR(r.temperature_c) AS INTEGER) AS temperature_bin_c,
       COUNT(*) AS readings
FROM ${schema}.readings AS r
JOIN ${schema}.cycles AS c
  ON r.rig = c.rig AND r.cell = c.cell AND r.ts >= c.start_ts AND r.ts <= c.ts
WHERE r.temperature_c IS NOT NULL
GROUP BY c.rig, c.cell, c.cycle, CAST(FLOOR(r.temperature_c) AS INTEGER)
WITH NO SCHEMA BINDING;
