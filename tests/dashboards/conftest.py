"""Every SQL query of every dashboard panel as a test parameter.

A test that takes a ``dashboard_target`` argument runs once per query, with an id such as
``noc-interfaces.json#7A`` (file, panel id, refId), so a failure names the dashboard and panel at fault.
"""

from __future__ import annotations

import pytest

from tests.dashboards.grafana_files import iter_targets


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dashboard_target" in metafunc.fixturenames:
        targets = list(iter_targets())
        metafunc.parametrize(
            "dashboard_target",
            targets,
            ids=[f"{t.file}#{t.panel.get('id')}{t.target.get('refId')}" for t in targets],
        )
