"""The cost model behind docs/cost-per-cell-month.md: measured with the agent's encoder, and the page says what
the script computes (so neither drifts alone)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.cloud.tf import ROOT

spec = importlib.util.spec_from_file_location("cloud_cost", ROOT / "bench" / "cloud_cost.py")
cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost)


def test_batching_basic_ingest_and_envelope_move_the_cost_the_way_the_page_says():
    slow = cost.per_cell_month(8, 1.0, "compact", 14_848, 1000, basic_ingest=False)
    batched = cost.per_cell_month(8, 1.0, "compact", 14_848, 60_000, basic_ingest=False)
    basic = cost.per_cell_month(8, 1.0, "compact", 14_848, 60_000, basic_ingest=True)
    records = cost.per_cell_month(8, 10.0, "records", 14_848, 60_000, basic_ingest=True)
    compact = cost.per_cell_month(8, 10.0, "compact", 14_848, 60_000, basic_ingest=True)
    assert slow["readings_per_msg"] == 8 and batched["readings_per_msg"] > 400
    assert batched["msg_bytes"] <= 14_848 and batched["iot_units_per_msg"] == 3
    assert batched["total"] < slow["total"] / 10
    assert basic["iot_messaging"] == 0 and basic["total"] < batched["total"]
    assert compact["bytes_per_reading"] < 40 < 120 < records["bytes_per_reading"]
    # Firehose with a record per reading pays 5 KB for each (130-byte) reading.
    assert compact["firehose_per_reading"] > 100 * compact["kinesis_put"]


@pytest.mark.parametrize("rate,linger", [(1, 1000), (1, 60_000), (10, 1000), (10, 60_000)])
def test_the_page_quotes_the_models_figures(rate, linger):
    page = (ROOT / "docs" / "cost-per-cell-month.md").read_text()
    c = cost.per_cell_month(8, float(rate), "compact", 14_848, linger, basic_ingest=True)
    row = re.search(rf"^\| {rate} Hz \| {linger:,}[^|]*\| (\d+) \| ([\d.]+) \| \**([\d.]+)\** \|$", page, re.MULTILINE)
    assert row, f"no row for {rate} Hz / {linger} ms in the page"
    assert int(row.group(1)) == c["readings_per_msg"]
    assert float(row.group(2)) == pytest.approx(c["bytes_per_reading"], abs=0.06)
    assert float(row.group(3)) == pytest.approx(c["total"], abs=0.0006)
