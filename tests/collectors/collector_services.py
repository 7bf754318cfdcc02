"""Test setup for the collectors: the Debian SNMP tools, installed when missing, or a failure saying how.

CI runs ``apt-get install -y snmpd snmp snmpsim`` before the tests; on a developer machine where they
are missing and we are root with apt-get, :func:`ensure_snmp_tools` installs them (set
``OSSBSS_NO_APT=1`` to forbid that). Otherwise the test fails with the command to run; never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors.snmp_sim import APT_HINT

DEBIAN_PACKAGES = ("snmpd", "snmp", "snmpsim")
TOOLS = {"snmpd": "snmpd", "snmpbulkwalk": "snmp", "snmptrap": "snmp", "snmpinform": "snmp", "snmpsimd": "snmpsim"}


def _missing() -> list[str]:
    return [tool for tool in TOOLS if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"))]


def ensure_snmp_tools() -> None:
    """Make sure snmpd, the net-snmp command line tools and snmpsimd are installed, or fail the test."""
    missing = _missing()
    if not missing:
        return
    can_install = os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get("OSSBSS_NO_APT")
    if can_install:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        packages = sorted({TOOLS[t] for t in missing})
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True, text=True, timeout=900
        )
        missing = _missing()
        if not missing:
            return
        pytest.fail(f"apt-get could not install {packages}: {proc.stderr[-1500:]}\n{APT_HINT}", pytrace=False)
    pytest.fail(f"missing SNMP tools {missing}: {APT_HINT}", pytrace=False)


def snmp_env() -> dict[str, str]:
    """Environment for the net-snmp command line tools: numeric OIDs, no MIB loading noise."""
    return dict(os.environ, MIBS="", MIBDIRS="/nonexistent")


def snmpbulkwalk(args: list[str], oid: str, timeout: float = 20.0) -> dict[str, tuple[str, str]]:
    """Run net-snmp's snmpbulkwalk; returns {numeric OID: (type, value)}."""
    cmd = ["snmpbulkwalk", "-On", "-Oe", "-Cr25", *args, oid]
    proc = subprocess.run(cmd, env=snmp_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snmpbulkwalk failed ({proc.returncode}): {proc.stderr}")
    out: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        name, sep, rest = line.partition(" = ")
        if not sep:
            continue
        kind, _, value = rest.partition(": ")
        out[name.lstrip(".")] = (kind, value.strip().strip('"'))
    return out


FAKE_SERVER_MODULE = "github.com/openconfig/gnmi/testing/fake/gnmi/cmd/fake_server"
FAKE_SERVER_VERSION = "v0.14.1"


def ensure_openconfig_fake_server(cache_dir: Path) -> Path:
    """Build the openconfig/gnmi fake gNMI target with ``go install`` through the Go module proxy (cached)."""
    gopath = cache_dir / "go"
    binary = gopath / "bin" / "fake_server"
    marker = gopath / f".fake_server-{FAKE_SERVER_VERSION}"
    if binary.exists() and marker.exists():
        return binary
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        pytest.fail(
            "the third-party gNMI target needs Go to build it: install Go (https://go.dev/dl/) and make "
            f"proxy.golang.org reachable; it runs `go install {FAKE_SERVER_MODULE}@{FAKE_SERVER_VERSION}`",
            pytrace=False,
        )
    env = dict(
        os.environ,
        GOPATH=str(gopath),
        GOBIN=str(gopath / "bin"),
        GOCACHE=str(gopath / "build"),
        GOFLAGS="-modcacherw -buildvcs=false",
    )
    proc = subprocess.run(
        [go, "install", f"{FAKE_SERVER_MODULE}@{FAKE_SERVER_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0 or not binary.exists():
        pytest.fail(f"go install of the openconfig fake gNMI target failed:\n{proc.stderr[-3000:]}", pytrace=False)
    marker.write_text(FAKE_SERVER_VERSION)
    return binary


__all__ = ["DEBIAN_PACKAGES", "ensure_openconfig_fake_server", "ensure_snmp_tools", "snmp_env", "snmpbulkwalk"]
