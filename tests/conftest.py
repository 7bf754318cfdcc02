"""Session-wide real services: one Kafka broker (from Maven Central, run with Java) per test session.

The broker listens on free loopback ports with its data in a temporary directory, so several test
sessions can run side by side. Set ``OSSBSS_TEST_BOOTSTRAP`` to use a broker you run yourself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from ossbss.localstack.kafka import KafkaBroker, KafkaStackError


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a running Kafka broker, started for this session."""
    external = os.environ.get("OSSBSS_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except KafkaStackError as exc:
        pytest.fail(
            f"cannot start the test Kafka broker: {exc}\n"
            "Start one with `python -m ossbss.localstack.kafka start` and set OSSBSS_TEST_BOOTSTRAP=127.0.0.1:9092",
            pytrace=False,
        )
    yield broker.bootstrap_servers
    broker.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never see each other's records."""
    return uuid.uuid4().hex[:8]
