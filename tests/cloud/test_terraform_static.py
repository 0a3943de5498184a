"""terraform fmt and validate on every module and example, and checkov with zero failed checks (offline)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.cloud import tf


def test_fmt_is_clean(terraform):
    proc = terraform.run(tf.TF_DIR, "fmt", "-check", "-recursive", "-diff", "-no-color", check=False)
    assert proc.returncode == 0, (
        f"terraform fmt would change these files (run terraform fmt -recursive):\n{proc.stdout}"
    )


@pytest.fixture(scope="module")
def validated(terraform, tmp_path_factory) -> dict[str, str]:
    """terraform validate -json of every module and example, in a clean copy."""
    tree = tf.copy_tree(tmp_path_factory.mktemp("validate"))
    results = {}
    for kind, names in (("modules", tf.MODULES), ("examples", tf.EXAMPLES)):
        for name in names:
            d = tree / kind / name
            terraform.init(d)
            results[f"{kind}/{name}"] = terraform.run(d, "validate", "-json", "-no-color", check=False).stdout
    return results


@pytest.mark.parametrize("path", [f"modules/{m}" for m in tf.MODULES] + [f"examples/{e}" for e in tf.EXAMPLES])
def test_validate(validated, path):
    result = json.loads(validated[path])
    problems = [f"{d['severity']}: {d['summary']}: {d.get('detail', '')}" for d in result["diagnostics"]]
    assert result["valid"], f"terraform validate {path}:\n" + "\n".join(problems)
    # Warnings are how deprecations arrive: keep the configuration free of them too.
    assert not problems, f"terraform validate {path} warns:\n" + "\n".join(problems)


def test_every_module_is_used_by_an_example():
    used = set()
    for e in tf.EXAMPLES:
        for f in (tf.TF_DIR / "examples" / e).glob("*.tf"):
            used |= {m for m in tf.MODULES if f'"../../modules/{m}"' in f.read_text()}
    assert used == set(tf.MODULES), f"modules no example plans (so no contract test sees): {set(tf.MODULES) - used}"


def test_checkov_zero_failed_checks(tmp_path):
    exe = tf.checkov_bin()
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
        "BC_API_KEY": "",
        "PRISMA_API_URL": "",
    }
    proc = subprocess.run(
        [str(exe), "-d", str(tf.TF_DIR), "--compact", "--skip-download", "-o", "json", "--framework", "terraform"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(
            f"checkov printed no JSON report (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["passed"] > 100 and summary["parsing_errors"] == 0, summary
    # A skip is acceptable only with a reason written next to it.
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    assert len(skipped) == sum(r["summary"]["skipped"] for r in reports)
    for c in skipped:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 20, f"checkov skip without a reason: {c['check_id']} {c['resource']}"
