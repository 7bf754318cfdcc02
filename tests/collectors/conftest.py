"""Real peers for the collectors' tests: net-snmp snmpd, snmpsimd, and the gNMI simulator with a test PKI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers next to this file

from collector_services import ensure_snmp_tools

from collectors.gnmi_sim import PkiFiles, make_test_pki
from collectors.snmp_sim import DeviceProfile, SnmpdAgent, SnmpsimAgent, SnmpSimError

AUTH_KEY = "ossbss-auth-secret"
PRIV_KEY = "ossbss-priv-secret"


@pytest.fixture(scope="session")
def snmp_tools() -> None:
    ensure_snmp_tools()


@pytest.fixture(scope="session")
def snmpd(snmp_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdAgent]:
    """net-snmp snmpd on a free port: community ``public``, v3 users ``ossbss`` (SHA-256 + AES),
    ``authonly`` (SHA-512, no privacy) and ``plainuser`` (noAuthNoPriv)."""
    extra = "\n".join(
        [
            "createUser plainuser",  # noAuthNoPriv
            "rouser plainuser noauth",
            f'createUser authonly SHA-512 "{AUTH_KEY}"',  # authNoPriv with SHA-512
            "rouser authonly auth",
        ]
    )
    agent = SnmpdAgent(tmp_path_factory.mktemp("snmpd"), auth_key=AUTH_KEY, priv_key=PRIV_KEY, extra_config=extra)
    try:
        agent.start()
    except SnmpSimError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield agent
    agent.stop()


SIM_DEVICES = [
    DeviceProfile("sw01", interfaces=48),
    DeviceProfile("sw02", interfaces=48, seed=1),
    DeviceProfile("sw03", interfaces=48, seed=2),
    DeviceProfile("legacy", interfaces=12, hc=False),
]


@pytest.fixture(scope="session")
def snmpsim(snmp_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimAgent]:
    """snmpsimd serving 3 x 48-interface switches with HC counters and one 32-bit-only device."""
    agent = SnmpsimAgent(tmp_path_factory.mktemp("snmpsim"), devices=SIM_DEVICES, auth_key=AUTH_KEY, priv_key=PRIV_KEY)
    try:
        agent.start()
    except SnmpSimError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def v3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The v3 passphrases in environment variables, as the collectors read them."""
    monkeypatch.setenv("TEST_SNMP_AUTH", AUTH_KEY)
    monkeypatch.setenv("TEST_SNMP_PRIV", PRIV_KEY)
    return {"auth_key_env": "TEST_SNMP_AUTH", "priv_key_env": "TEST_SNMP_PRIV"}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MIBS", "")  # net-snmp tools: numeric OIDs, no MIB loading
