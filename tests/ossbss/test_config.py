"""Configuration: the example file is the defaults, and errors name the offending key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from assurance.config import AssuranceConfig, assurance_config
from ossbss.config import Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_equals_the_defaults():
    loaded = load_config(ROOT / "ossbss.yaml")
    assert dataclasses.replace(loaded, extra={}) == Config().validate()
    # Room sections are parsed by their rooms; the example's assurance section is its defaults too.
    assert assurance_config(loaded.extra) == AssuranceConfig().validate()


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"streams": {"allowed_lateness_s": "soon"}}, "streams.allowed_lateness_s"),
        ({"streams": {"allowed_lateness_s": -1}}, "streams.allowed_lateness_s"),
        ({"sink": {"batchsize": 5}}, "sink.batchsize"),
        ({"kafka": {"partitions": 0}}, "kafka.partitions"),
        ({"streams": {"workers": 0}}, "streams.workers"),
        ({"streams": {"workers": 5}, "kafka": {"partitions": 4}}, "streams.workers"),
        ({"warehouse": {"url": "mysql://x"}}, "warehouse.url"),
        ({"simulator": {"counter_bits": 16}}, "simulator.counter_bits"),
        ({"usage": "lots"}, "usage"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_errors_name_the_key(doc, key):
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}:")


def test_workers_up_to_the_partitions():
    config = parse_config({"streams": {"workers": 4}, "kafka": {"partitions": 4}})
    assert config.streams.workers == 4
    assert Config().streams.workers == 1


def test_room_sections_pass_through():
    config = parse_config({"collectors": {"targets": []}})
    assert config.extra == {"collectors": {"targets": []}}


def test_secrets_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OSSBSS_KAFKA_PASSWORD", "s3cret")
    config = parse_config(
        {"kafka": {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u", "security_protocol": "SASL_SSL"}}
    )
    assert config.kafka.client_config()["sasl.password"] == "s3cret"
    assert "s3cret" not in repr(config)


def test_effective_config_round_trips(tmp_path):
    config = parse_config({"streams": {"app_id": "x", "allowed_lateness_s": 3}, "collectors": {"targets": [1]}})
    from ossbss.config import write_config

    assert load_config(write_config(config, tmp_path / "c.yaml")) == config
