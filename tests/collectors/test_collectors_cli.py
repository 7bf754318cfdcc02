"""``ossbss collect``: JSON lines out, bad lines reported, exit codes, secrets never echoed."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from collectors.gnmi_sim import GnmiSimThread, GnmiSimulator, SimDevice
from collectors.snmp_sim import SnmpsimAgent
from ossbss.cli import main


@pytest.mark.integration
def test_collect_snmp_v3_once(
    snmpsim: SnmpsimAgent, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_AUTH", "ossbss-auth-secret")
    monkeypatch.setenv("CLI_PRIV", "ossbss-priv-secret")
    code = main(
        [
            "collect",
            "snmp",
            "--target",
            snmpsim.address,
            "--name",
            "sw02",
            "--user",
            "ossbss",
            "--context",
            "sw02",
            "--auth-proto",
            "SHA256",
            "--auth-key-env",
            "CLI_AUTH",
            "--priv-proto",
            "AES",
            "--priv-key-env",
            "CLI_PRIV",
            "--once",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 48 and {r["device"] for r in rows} == {"sw02"} and rows[0]["source"] == "snmp"
    assert "ossbss-auth-secret" not in out + err and "ossbss-priv-secret" not in out + err


@pytest.mark.integration
def test_collect_snmp_failure_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["collect", "snmp", "--target", "127.0.0.1:9", "--timeout", "0.2", "--retries", "0", "--once"])
    _, err = capsys.readouterr()
    assert code == 1 and "no response after 1 attempt" in err


def test_collect_snmp_missing_secret_is_an_option_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "collect",
            "snmp",
            "--target",
            "127.0.0.1",
            "--user",
            "u",
            "--auth-proto",
            "SHA256",
            "--auth-key-env",
            "CLI_NOT_SET_XYZ",
            "--once",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "auth_key_env" in err and "CLI_NOT_SET_XYZ" in err


def test_collect_usage_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "id,account,service,start,end,bytes_up,bytes_down\n"
        "a,acc,internet,2026-11-20T00:00:00Z,2026-11-20T00:01:00Z,1,2\n"
        "b,acc,internet,2026-11-20T00:00:00Z,2026-11-19T00:01:00Z,1,2\n"
        "c,acc,internet,2026-11-20T00:00:00Z,2026-11-20T00:01:00Z,x,2\n"
    )
    code = main(["collect", "usage", str(path), "--check", "--max-age-days", "0", "--max-future-s", "1e12"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert f"{path}: line 3: end is before start" in out
    assert f"{path}: line 4: bytes_up: not an integer: 'x'" in out
    assert "3 lines, 1 valid, 2 bad" in out
    path.write_text(path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1] + "\n")
    assert main(["collect", "usage", str(path), "--max-age-days", "0", "--max-future-s", "1e12"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["id"] == "a" and row["bytes_down"] == 2


@pytest.mark.integration
def test_collect_gnmi_once_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    sim = GnmiSimThread(GnmiSimulator(SimDevice(interfaces=5))).start()
    try:
        code = main(["collect", "gnmi", "--target", sim.address, "--insecure", "--name", "r9", "--once"])
        out, err = capsys.readouterr()
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        assert sorted(r["if_index"] for r in rows) == [1, 2, 3, 4, 5] and rows[0]["device"] == "r9"
        assert main(["collect", "gnmi", "--target", sim.address, "--insecure", "--capabilities"]) == 0
        caps = json.loads(capsys.readouterr().out)
        assert caps["gnmi_version"] == "0.8.0" and "JSON_IETF" in caps["encodings"]
    finally:
        sim.close()


@pytest.mark.integration
def test_collect_traps_prints_events(capsys: pytest.CaptureFixture[str], snmp_tools: None) -> None:
    from collectors.snmp_sim import free_udp_port
    from collectors.traps import encode_test_trap

    port = free_udp_port()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(main(["collect", "traps", "--listen", f"127.0.0.1:{port}", "--duration", "1.0"]))
    )
    thread.start()

    async def send() -> None:
        import socket

        await asyncio.sleep(0.4)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(
                encode_test_trap("public", "1.3.6.1.6.3.1.1.5.4", [("1.3.6.1.2.1.2.2.1.1.2", 2, 2)]),
                ("127.0.0.1", port),
            )

    asyncio.run(send())
    thread.join(10)
    out, err = capsys.readouterr()
    assert result == [0], err
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["kind"] == "linkUp" and event["if_index"] == 2
