"""PartitionAssurance: windows and fault events in, alert state changes out, resumable from a snapshot."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from assurance.config import assurance_config
from assurance.rules import ANOMALY, FAILURE_PREDICTED, HIGH_UTILISATION, WINDOW_MS, PartitionAssurance
from assurance.scenarios import generate_scenarios
from models.records import Alert, FaultEvent, InterfaceRate
from ossbss.config import ConfigError

T0 = 1_790_000_000_000 - 1_790_000_000_000 % WINDOW_MS


def window(minute: int, *, errors: int = 0, util: float = 30.0, device: str = "r1", if_index: int = 1) -> InterfaceRate:
    wobble = (minute % 5) * 0.2
    return InterfaceRate(
        id=f"{device}/{if_index}/{minute}",
        device=device,
        if_index=if_index,
        window_start_ms=T0 + minute * WINDOW_MS,
        samples=6,
        in_bps_avg=(util + wobble) * 1e7,
        out_bps_avg=(util / 2 + wobble) * 1e7,
        in_bps_max=(util + wobble + 1) * 1e7,
        out_bps_max=(util / 2 + wobble + 1) * 1e7,
        in_pps_avg=(util + wobble) * 1e3,
        out_pps_avg=(util / 2 + wobble) * 1e3,
        in_util_pct_avg=util + wobble,
        out_util_pct_avg=util / 2 + wobble,
        speed_bps=1_000_000_000,
        in_errors=errors,
    )


def run(state: PartitionAssurance, windows: Iterable[InterfaceRate]) -> list[Alert]:
    out: list[Alert] = []
    for w in windows:
        out += state.process([w], [], w.window_start_ms + WINDOW_MS)
    return out


def settings(**extra: object) -> dict[str, object]:
    return {"assurance": {"predict_faults": False, **extra}}


def test_an_error_burst_opens_an_anomaly_alert_that_resolves_when_windows_are_normal_again() -> None:
    state = PartitionAssurance(assurance_config(settings(anomaly_resolve_after_s=120)))
    quiet = run(state, (window(m) for m in range(150)))
    assert quiet == []
    burst = run(state, (window(m, errors=800) for m in range(150, 153)))
    assert [(a.name, a.status) for a in burst] == [(ANOMALY, "firing")]
    assert "in_errors" in burst[0].summary and burst[0].device == "r1" and burst[0].if_index == 1
    after = run(state, (window(m) for m in range(153, 160)))
    assert [(a.name, a.status) for a in after] == [(ANOMALY, "resolved")]
    assert after[0].fingerprint == burst[0].fingerprint


def test_utilisation_over_the_threshold_is_an_alert() -> None:
    state = PartitionAssurance(assurance_config(settings(utilisation_alert_pct=80, anomaly_resolve_after_s=0)))
    run(state, (window(m, util=50) for m in range(100)))
    busy = [a for a in run(state, [window(100, util=95)]) if a.name == HIGH_UTILISATION]
    assert [a.status for a in busy] == ["firing"] and "utilisation" in busy[0].summary
    calm = [a for a in run(state, [window(101, util=50), window(102, util=50)]) if a.name == HIGH_UTILISATION]
    assert [a.status for a in calm] == ["resolved"]


def test_link_faults_open_and_resolve_interface_down() -> None:
    state = PartitionAssurance(assurance_config(settings(link_resolve_after_s=5)))
    down = FaultEvent(id="d", device="r9", ts_ms=T0, kind="linkDown", if_index=4)
    up = FaultEvent(id="u", device="r9", ts_ms=T0 + 1000, kind="linkUp", if_index=4)
    assert [(a.name, a.status) for a in state.process([], [down], T0)] == [("InterfaceDown", "firing")]
    assert state.process([], [up], T0 + 1000) == []  # clear, but not yet for 5 s
    resolved = state.tick(T0 + 7000)
    assert [(a.status, a.ends_ms) for a in resolved] == [("resolved", T0 + 1000)]


def test_a_restored_partition_continues_exactly_like_an_uninterrupted_one() -> None:
    config = assurance_config(settings(anomaly_resolve_after_s=60))
    windows = [window(m, errors=900 if 130 <= m < 133 else 0) for m in range(140)]
    straight = PartitionAssurance(config)
    expected = run(straight, windows)

    first = PartitionAssurance(config)
    got = run(first, windows[:131])
    resumed = PartitionAssurance.restore(config, first.snapshot())
    got += run(resumed, windows[131:])
    assert [a.id for a in got] == [a.id for a in expected]
    assert got == expected
    assert any(a.name == ANOMALY for a in expected)
    # Replaying windows the restored state has already seen emits nothing.
    assert run(resumed, windows[125:140]) == []


def test_predicted_failures_become_alerts_before_the_failure() -> None:
    scenarios = generate_scenarios(60, hours=3, seed=4242)
    state = PartitionAssurance(assurance_config({"assurance": {"predict_faults": True}}))
    alerts: list[Alert] = []
    for minute, rates, faults in scenarios.replay():
        alerts += state.process(rates, faults, scenarios.minute_ms(minute) + WINDOW_MS)
    predicted = {(a.device, a.if_index): a for a in alerts if a.name == FAILURE_PREDICTED and a.status == "firing"}
    labels = scenarios.labels()
    failing = {key for key, when in labels.items() if when is not None}
    caught = [key for key in failing if key in predicted and predicted[key].starts_ms < (labels[key] or 0)]
    assert len(caught) >= len(failing) // 2, (len(caught), len(failing))
    assert all("failure likely" in predicted[key].summary for key in caught)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"anomaly_threshold": 2}, "assurance.anomaly_threshold"),
        ({"flap_threshold": 1}, "assurance.flap_threshold"),
        ({"webhooks": [{"url": "ftp://x"}]}, "assurance.webhooks[0].url"),
        ({"webhooks": [{"url": "http://x", "secret_env": "OSSBSS_TEST_UNSET_SECRET"}]}, "assurance.webhooks[0]"),
        ({"tickets": [{"url": "http://x"}]}, "assurance.tickets[0].template"),
        ({"nonsense": 1}, "assurance.nonsense"),
        ({"webhooks": {"url": "http://x"}}, "assurance.webhooks"),
    ],
)
def test_configuration_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        assurance_config({"assurance": section})
    assert err.value.key.startswith(key)
