"""Collector config: the example parses, errors name the key, types select implementations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import collectors
from collectors.base import (
    CollectorConfigError,
    ListSink,
    Secret,
    SecretError,
    build_collector,
    collector_class,
    parse_collectors,
    read_secret,
)
from collectors.gnmi import GnmiCollector
from collectors.snmp import SnmpCollector, SnmpConfig
from collectors.traps import TrapCollector
from collectors.usage import UsageFilesCollector, UsageKafkaCollector

EXAMPLE = Path(collectors.__file__).with_name("example.yaml")


def test_example_config_parses_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "SNMP_COMMUNITY",
        "SNMP_AUTH_KEY",
        "SNMP_PRIV_KEY",
        "SNMP_TRAP_COMMUNITIES",
        "GNMI_USER",
        "GNMI_PASSWORD",
    ):
        monkeypatch.setenv(var, f"{var.lower()}-value")
    configs = parse_collectors(yaml.safe_load(EXAMPLE.read_text())["collectors"])
    assert [c.type for c in configs] == ["snmp", "snmp_traps", "gnmi", "usage_files", "usage_kafka"]
    built = [build_collector(c, ListSink(), config_key=f"collectors[{i}]") for i, c in enumerate(configs)]
    assert [type(b) for b in built] == [
        SnmpCollector,
        TrapCollector,
        GnmiCollector,
        UsageFilesCollector,
        UsageKafkaCollector,
    ]
    snmp = configs[0]
    assert isinstance(snmp, SnmpConfig) and snmp.targets[1].max_repetitions == 40
    assert "snmp_auth_key-value" not in repr(built[0].targets)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        ([{"type": "snmpp"}], "collectors[0].type", "unknown collector type 'snmpp'"),
        ([{"name": "x"}], "collectors[0].type", "is required"),
        (
            [{"type": "snmp", "targets": [{"host": "h", "port": "x"}]}],
            "collectors[0].targets[0].port",
            "Expected `int`",
        ),
        ([{"type": "snmp", "targets": [{"host": "h", "port": 70000}]}], "collectors[0].targets[0].port", "1..65535"),
        ([{"type": "snmp", "targets": [{"host": "h", "version": "3"}]}], "collectors[0].targets[0].user", "required"),
        (
            [{"type": "snmp", "targets": [{"host": "h", "version": "3", "user": "u", "auth_proto": "SHA256"}]}],
            "collectors[0].targets[0].auth_key_env",
            "auth_key_env or auth_key_file",
        ),
        ([{"type": "snmp", "interval_s": 0}], "collectors[0].interval_s", "> 0"),
        ([{"type": "snmp", "bogus": 1}], "collectors[0]", "unknown field `bogus`"),
        ([{"type": "gnmi", "targets": [{"address": "nohost"}]}], "collectors[0].targets[0].address", "host:port"),
        (
            [{"type": "gnmi", "targets": [{"address": "h:1", "tls_ca": "/nope.pem"}]}],
            "collectors[0].targets[0].tls_ca",
            "not found",
        ),
        ([{"type": "snmp_traps", "device_from": "dns"}], "collectors[0].device_from", "address or sysname"),
        ([{"type": "usage_files", "batch_size": 0}], "collectors[0].batch_size", ">= 1"),
        ([{"type": "snmp", "name": "a"}, {"type": "gnmi", "name": "a"}], "collectors", "used twice"),
    ],
)
def test_errors_name_the_key(section: list[dict[str, object]], key: str, reason: str) -> None:
    with pytest.raises(CollectorConfigError) as info:
        parse_collectors(section)
    assert info.value.key == key and reason in info.value.reason, str(info.value)


def test_secrets_come_from_env_or_files_and_hide_themselves(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-a-file\nsecond line ignored\n")
    assert read_secret("k", file=str(tmp_path / "key")).reveal() == "from-a-file"
    secret = read_secret("k", env="X", environ={"X": "hunter22"})
    assert "hunter22" not in repr(secret) + str(secret) and secret == Secret("hunter22")
    with pytest.raises(SecretError, match="env MISSING"):
        read_secret("targets[0].auth_key_env", env="MISSING", environ={})
    configs = parse_collectors(
        [
            {
                "type": "snmp",
                "targets": [
                    {
                        "host": "h",
                        "version": "3",
                        "user": "u",
                        "auth_proto": "SHA256",
                        "auth_key_env": "NOT_SET_ANYWHERE",
                    }
                ],
            }
        ]
    )
    with pytest.raises(SecretError) as info:
        build_collector(configs[0], ListSink(), config_key="collectors[0]")
    assert info.value.key == "collectors[0].targets[0].auth_key_env"


def test_registry_knows_every_builtin_type() -> None:
    for name in ("snmp", "snmp_traps", "gnmi", "usage_files", "usage_kafka"):
        assert collector_class(name).type_name == name
