"""Real SNMP agents for tests, demos and ``ossbss up``: net-snmp ``snmpd`` and ``snmpsimd`` (Debian).

* :class:`SnmpdAgent` runs ``snmpd`` in the foreground on a free loopback UDP port with a generated
  config: a read-only v2c community and an SNMPv3 authPriv user (SHA-256 + AES by default), its
  persistent state (engine ID, boots, localized keys) in a private directory.
* :class:`SnmpsimAgent` runs ``snmpsimd`` serving generated ``.snmprec`` recordings of devices with
  many interfaces (48 by default): one data file per device, selected by v2c community or v3 context
  name. The data is static, so a poll must return exactly what :func:`device_records` wrote.

Both need the Debian packages ``snmpd snmp snmpsim`` (``apt-get install -y snmpd snmp snmpsim``); a
missing binary raises :class:`SnmpSimError` saying so. Secrets reach the agents through files
(mode 0600), never their command lines.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.snmp_wire import (
    GET,
    V2C,
    BerError,
    decode_message,
    encode_community_message,
    encode_pdu,
    null_varbinds,
    oid_content,
)

APT_HINT = "install the Debian packages with: apt-get install -y snmpd snmp snmpsim"


class SnmpSimError(RuntimeError):
    """An agent could not be started; the message says what to install or look at."""


def find_tool(name: str) -> str:
    """Path of a net-snmp/snmpsim executable, or :class:`SnmpSimError` naming the package to install."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SnmpSimError(f"'{name}' not found: {APT_HINT}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def snmp_ready(host: str, port: int, community: str, timeout: float = 0.3) -> bool:
    """True when a v2c GET of sysUpTime.0 is answered (any answer: the agent is serving)."""
    request = encode_community_message(
        V2C, community.encode(), encode_pdu(GET, 1, 0, 0, null_varbinds([oid_content("1.3.6.1.2.1.1.3.0")]))
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(request, (host, port))
            data = s.recv(65535)
        except OSError:
            return False
    try:
        decode_message(data)
    except BerError:
        return False
    return True


class _Process:
    """A child process we started, stopped by its own pid (SIGTERM, then SIGKILL)."""

    proc: subprocess.Popen[bytes] | None = None

    def _stop_process(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def _wait_ready(agent: Any, community: str, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.proc is None or agent.proc.poll() is not None:
            code = agent.proc.returncode if agent.proc else "?"
            raise SnmpSimError(f"{what} exited with {code}; log {log}:\n{_tail(log)}")
        if snmp_ready(agent.host, agent.port, community):
            return
        time.sleep(0.1)
    agent.stop()
    raise SnmpSimError(
        f"{what} did not answer on {agent.host}:{agent.port} within {timeout:g}s; log {log}:\n{_tail(log)}"
    )


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------- snmpd


@dataclass
class SnmpdAgent(_Process):
    """net-snmp ``snmpd`` on loopback with a v2c community and one v3 user (auth/priv per the fields)."""

    work_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    community: str = "public"
    user: str = "ossbss"
    auth_proto: str = "SHA-256"  # net-snmp spelling: MD5 SHA SHA-224 SHA-256 SHA-384 SHA-512
    auth_key: str = field(default="ossbss-auth-secret", repr=False)
    priv_proto: str = "AES"
    priv_key: str = field(default="ossbss-priv-secret", repr=False)
    sys_name: str = "ossbss-snmpd"
    extra_config: str = ""

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.proc = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "persist").mkdir(exist_ok=True)
        conf = self.work_dir / "snmpd.conf"
        lines = [
            f"agentAddress udp:{self.host}:{self.port}",
            f"rocommunity {self.community} {self.host}",
            f"rouser {self.user} priv",
            f"sysName {self.sys_name}",
            "sysLocation ossbss test lab",
            "sysContact ops@example.invalid",
            "sysServices 72",
            "dontLogTCPWrappersConnects yes",  # one log line per request would grow without bound
            # the user's passwords are hashed into the persistent store on first start
            f'createUser {self.user} {self.auth_proto} "{self.auth_key}" {self.priv_proto} "{self.priv_key}"',
            self.extra_config,
        ]
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)
        return conf

    def start(self, timeout: float = 15.0) -> SnmpdAgent:
        if self.running:
            return self
        binary = find_tool("snmpd")
        if not self.port:
            self.port = free_udp_port(self.host)
        conf = self._write_config()
        log = self.work_dir / "snmpd.log"
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(self.work_dir / "persist"), MIBS="", MIBDIRS="/nonexistent")
        persistent = self.work_dir / "persist" / "snmpd.conf"
        persistent.touch()
        # -C skips the system's config files; naming the persistent file keeps engine ID and boots across restarts
        configs = f"{conf},{persistent}"
        cmd = [binary, "-f", "-C", "-c", configs, "-Lf", str(log), "-p", str(self.work_dir / "snmpd.pid")]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ready(self, self.community, log, timeout, "snmpd")
        return self

    def stop(self) -> None:
        self._stop_process()

    def restart(self, timeout: float = 15.0) -> SnmpdAgent:
        """Stop and start on the same port: the agent's engine boots and uptime start again."""
        self.stop()
        return self.start(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


# --------------------------------------------------------------------------------------------- snmpsim


@dataclass(frozen=True)
class DeviceProfile:
    """One recorded device: ``interfaces`` rows, HC counters or not, a seed for its values."""

    name: str
    interfaces: int = 48
    hc: bool = True
    seed: int = 0
    sys_descr: str = "ossbss simulated switch"


_SPEEDS = ((1_000_000_000, 1000), (10_000_000_000, 10_000), (100_000_000, 100), (25_000_000_000, 25_000))


def device_records(profile: DeviceProfile, uptime_ticks: int = 8_640_000) -> list[tuple[str, int, str]]:
    """The (OID, snmprec tag, value) lines of one device: system group, ifTable and ifXTable."""
    rng = random.Random(f"{profile.name}/{profile.seed}")
    sysp = "1.3.6.1.2.1.1"
    rows: list[tuple[str, int, str]] = [
        (f"{sysp}.1.0", 4, profile.sys_descr),
        (f"{sysp}.2.0", 6, "1.3.6.1.4.1.8072.3.2.10"),
        (f"{sysp}.3.0", 67, str(uptime_ticks)),
        (f"{sysp}.4.0", 4, "ops@example.invalid"),
        (f"{sysp}.5.0", 4, profile.name),
        (f"{sysp}.6.0", 4, "lab"),
        (f"{sysp}.7.0", 2, "6"),
        ("1.3.6.1.2.1.2.1.0", 2, str(profile.interfaces)),
    ]
    ift, ifx = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
    for i in range(1, profile.interfaces + 1):
        speed, high = _SPEEDS[i % len(_SPEEDS)]
        oper = 2 if i % 11 == 0 else 1
        hc = [rng.randrange(0, 2**52) for _ in range(8)]  # in/out octets, ucast, mcast, bcast
        name = f"ge-0/0/{i - 1}"
        ifspeed = min(speed, 2**32 - 1)
        col: dict[int, tuple[int, str]] = {
            1: (2, str(i)),
            2: (4, f"{name} uplink" if i == 1 else name),
            3: (2, "6"),
            4: (2, "9000"),
            5: (66, str(ifspeed)),
            6: (4, "0x" + f"02005e{i:06x}"),
            7: (2, "1"),
            8: (2, str(oper)),
            9: (67, str(rng.randrange(0, uptime_ticks))),
            10: (65, str(hc[0] % 2**32)),
            11: (65, str(hc[2] % 2**32)),
            12: (65, str((hc[4] + hc[6]) % 2**32)),
            13: (65, str(rng.randrange(0, 10_000))),
            14: (65, str(rng.randrange(0, 1_000))),
            15: (65, "0"),
            16: (65, str(hc[1] % 2**32)),
            17: (65, str(hc[3] % 2**32)),
            18: (65, str((hc[5] + hc[7]) % 2**32)),
            19: (65, str(rng.randrange(0, 10_000))),
            20: (65, str(rng.randrange(0, 1_000))),
            21: (66, "0"),
            22: (6, "0.0"),
        }
        for c, (tag, value) in col.items():
            rows.append((f"{ift}.{c}.{i}", tag, value))
        xcol: dict[int, tuple[int, str]] = {
            1: (4, name),
            2: (65, str(hc[4] % 2**32)),
            3: (65, str(hc[6] % 2**32)),
            4: (65, str(hc[5] % 2**32)),
            5: (65, str(hc[7] % 2**32)),
            14: (2, "1"),
            15: (66, str(high)),
            16: (2, "2"),
            17: (2, "1"),
            18: (4, f"customer-{i:03d}"),
            19: (67, "0"),
        }
        if profile.hc:
            hc_order = (hc[0], hc[2], hc[4], hc[6], hc[1], hc[3], hc[5], hc[7])
            for c, counter in zip(range(6, 14), hc_order, strict=True):
                xcol[c] = (70, str(counter))
        for c, (tag, value) in xcol.items():
            rows.append((f"{ifx}.{c}.{i}", tag, value))
    rows.sort(key=lambda r: tuple(int(x) for x in r[0].split(".")))
    return rows


def write_snmprec(path: Path, profile: DeviceProfile) -> Path:
    """Write one device's recording in snmpsim's ``OID|TAG|VALUE`` format (hex strings as ``4x``)."""
    lines = []
    for oid, tag, value in device_records(profile):
        if tag == 4 and value.startswith("0x"):
            lines.append(f"{oid}|4x|{value[2:]}")
        else:
            lines.append(f"{oid}|{tag}|{value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _traversable_by_others(path: Path) -> bool:
    for part in [path, *path.parents]:
        with contextlib.suppress(OSError):
            if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
                return False
    return True


@dataclass
class SnmpsimAgent(_Process):
    """``snmpsimd`` serving generated devices: community (v2c) or context name (v3) = device name."""

    work_dir: Path
    devices: list[DeviceProfile] = field(default_factory=lambda: [DeviceProfile(f"sim{i:02d}") for i in range(1, 5)])
    port: int = 0
    host: str = "127.0.0.1"
    user: str = "ossbss"
    auth_proto: str = "SHA256"  # snmpsim spelling: MD5 SHA SHA224 SHA256 SHA384 SHA512
    auth_key: str = field(default="ossbss-auth-secret", repr=False)
    priv_proto: str = "AES"
    priv_key: str = field(default="ossbss-priv-secret", repr=False)
    _run_dir: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.proc = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def _prepare(self) -> tuple[Path, Path, Path]:
        """Data and cache directories the agent can still read after dropping to ``nobody``."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        run_dir = self.work_dir / "snmpsim"
        if os.geteuid() == 0 and not _traversable_by_others(self.work_dir):
            run_dir = Path(tempfile.mkdtemp(prefix="ossbss-snmpsim-"))  # pytest's tmp dirs are 0700
        self._run_dir = run_dir
        data, cache = run_dir / "data", run_dir / "cache"
        for d in (run_dir, data, cache):
            d.mkdir(parents=True, exist_ok=True)
        for profile in self.devices:
            write_snmprec(data / f"{profile.name}.snmprec", profile)
        run_dir.chmod(0o755)
        data.chmod(0o755)
        cache.chmod(0o777)
        for f in data.iterdir():
            f.chmod(0o644)
        return run_dir, data, cache

    def start(self, timeout: float = 60.0) -> SnmpsimAgent:
        if self.running:
            return self
        binary = find_tool("snmpsimd")
        if not self.port:
            self.port = free_udp_port(self.host)
        run_dir, data, cache = self._prepare()
        args = self.work_dir / "snmpsimd.args"  # secrets go through this file, never argv
        args.write_text(
            "\n".join(
                [
                    f"--v3-user={self.user}",
                    f"--v3-auth-key={self.auth_key}",
                    f"--v3-auth-proto={self.auth_proto}",
                    f"--v3-priv-key={self.priv_key}",
                    f"--v3-priv-proto={self.priv_proto}",
                    f"--agent-udpv4-endpoint={self.host}:{self.port}",
                ]
            )
            + "\n"
        )
        args.chmod(0o600)
        log = self.work_dir / "snmpsimd.log"
        cmd = [binary, f"--data-dir={data}", f"--cache-dir={cache}", f"--args-from-file={args}"]
        if os.geteuid() == 0:
            cmd += ["--process-user=nobody", "--process-group=nogroup"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=run_dir)
        _wait_ready(self, self.devices[0].name, log, timeout, "snmpsimd")
        return self

    def stop(self) -> None:
        self._stop_process()
        if self._run_dir is not None and self._run_dir != self.work_dir / "snmpsim":
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def targets_config(self, version: str = "2c", auth_env: str = "", priv_env: str = "") -> list[dict[str, Any]]:
        """Target entries for an ``snmp`` collector config polling every simulated device."""
        out: list[dict[str, Any]] = []
        for name in self.names:
            target: dict[str, Any] = {"host": self.host, "port": self.port, "name": name}
            if version == "3":
                target.update(
                    version="3",
                    user=self.user,
                    context=name,
                    auth_proto=self.auth_proto,
                    auth_key_env=auth_env,
                    priv_proto=self.priv_proto,
                    priv_key_env=priv_env,
                )
            else:
                target["community"] = name
            out.append(target)
        return out


__all__ = [
    "APT_HINT",
    "DeviceProfile",
    "SnmpSimError",
    "SnmpdAgent",
    "SnmpsimAgent",
    "device_records",
    "find_tool",
    "free_udp_port",
    "snmp_ready",
    "write_snmprec",
]
