"""What a SIGHUP reload does, decided from the old and new config alone (the process-level proof is in
test_lifecycle.py)."""

from __future__ import annotations

import asyncio

import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from agent.reload import effective_config, plan_reload
from tests.conftest import agent_config

SIM = {"type": "simulator", "cells": 2}


def cfg(tmp_path, drivers, **over):
    return parse_config(agent_config(tmp_path, None, None, None, drivers=drivers, **over))


def test_plan_names_added_removed_changed_kept_and_restart_only_keys(tmp_path):
    old = cfg(
        tmp_path,
        [
            {**SIM, "name": "a", "cell_prefix": "a"},
            {**SIM, "name": "b", "cell_prefix": "b"},
            {**SIM, "name": "d", "cell_prefix": "d"},
        ],
    )
    new = cfg(
        tmp_path,
        [
            {**SIM, "name": "a", "cell_prefix": "a"},
            {**SIM, "name": "b", "cell_prefix": "b", "sample_hz": 2.0},
            {**SIM, "name": "c", "cell_prefix": "c"},
            {**SIM, "name": "d", "cell_prefix": "d", "enabled": False},
        ],
        rig="other-rig",
        log={"level": "DEBUG"},
        store={"keep_sent_s": 10.0},
    )
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.changed, plan.kept) == (["c"], ["d"], ["b"], ["a"])
    assert sorted(plan.needs_restart) == ["rig", "store"]  # log applies in place
    eff = effective_config(old, new)
    assert eff.rig == old.rig and eff.store == old.store and eff.log.level == "DEBUG"
    assert [d.name for d in eff.drivers] == ["a", "b", "c", "d"]


def test_identical_config_changes_nothing(tmp_path):
    a = cfg(tmp_path, [{**SIM, "name": "a"}])
    plan = plan_reload(a, cfg(tmp_path, [{**SIM, "name": "a"}]))
    assert plan.summary() == "kept=a" and not plan.needs_restart


def test_cell_clash_rejects_the_whole_reload(tmp_path):
    """Two drivers reporting one cell id: nothing is applied, the running drivers stay."""
    old = cfg(tmp_path, [{**SIM, "name": "a", "cell_prefix": "a"}])
    clash = cfg(tmp_path, [{**SIM, "name": "a", "cell_prefix": "a"}, {**SIM, "name": "b", "cell_prefix": "a"}])

    async def scenario() -> None:
        agent = Agent(old)
        await agent.start()
        try:
            task = agent.runners["a"].task
            with pytest.raises(ValueError, match="cell id 'a01'"):
                await agent.reload(clash)
            assert list(agent.runners) == ["a"] and agent.runners["a"].task is task and not task.done()
            assert agent.cfg is old
        finally:
            await agent.stop(drain_timeout_s=0.2)

    asyncio.run(scenario())


def test_a_new_dashboard_token_is_a_change_and_the_old_token_stops_working(tmp_path):
    """14.2: secrets compare by value (a JSON dump prints every token as '**********'), and the dashboard is
    restarted with the new one: the old token is refused at once, the new one accepted."""
    import aiohttp

    from agent.runtime import build_agent

    old_token, new_token = "old-token-0123456789", "new-token-9876543210"
    dash = {"enabled": True, "host": "127.0.0.1", "port": 0}
    old = cfg(tmp_path, [{**SIM, "name": "a"}], dashboard={**dash, "token": old_token})
    new = cfg(tmp_path, [{**SIM, "name": "a"}], dashboard={**dash, "token": new_token})
    plan = plan_reload(old, new)
    assert plan.sections == ["dashboard"] and "applied=dashboard" in plan.summary() and not plan.needs_restart
    assert (
        plan_reload(old, cfg(tmp_path, [{**SIM, "name": "a"}], dashboard={**dash, "token": old_token})).sections == []
    )

    async def status(url: str, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http, http.get(url + "api/health", headers=headers) as r:
            return r.status

    async def scenario() -> None:
        agent = build_agent(old)
        await agent.start()
        try:
            dashboard = agent.services[0].inner
            assert await status(dashboard.url, old_token) == 200
            await agent.reload(new)
            assert agent.dashboard_token() == new_token
            dashboard = agent.services[0].inner
            assert await status(dashboard.url, old_token) == 401
            assert await status(dashboard.url, new_token) == 200
        finally:
            await agent.stop(drain_timeout_s=0.2)

    asyncio.run(scenario())
