"""Apache Kafka from its Maven Central artifacts, run with the machine's Java (KRaft, one node).

``install()`` resolves the broker jars with Maven into a cache directory (once per version),
``KafkaBroker.start()`` formats KRaft storage under a data directory, starts the broker on loopback
and waits until it answers; ``stop()`` shuts it down cleanly (SIGTERM, then SIGKILL after a timeout).

Run as a script: ``python -m ossbss.localstack.kafka start|stop|status [--data-dir DIR] [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "3.9.1"
# The local broker runs on the pipeline's own cores: with only the quick (C1) JIT, a freshly started
# broker spends half the CPU (measured: 7 s instead of 14 s over `ossbss bench pipeline_rates`), most
# of it the C2 compiler threads warming up. A long-running production broker keeps Kafka's defaults.
DEFAULT_JVM_OPTS = "-XX:+UseG1GC -XX:TieredStopAtLevel=1"
POM = Path(__file__).with_name("kafka-pom.xml")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class KafkaStackError(RuntimeError):
    """The local broker could not be installed or started; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("OSSBSS_CACHE_DIR", PROJECT_ROOT / "var" / "cache"))


def install(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """Resolve the broker's jars with Maven into the cache; returns the directory of jars."""
    libs = cache_dir() / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaStackError(f"'{tool}' is not on PATH: install Java 17+ and Maven to run the local Kafka broker")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions may install at once
        if marker.exists():
            return libs
        if libs.exists():
            shutil.rmtree(libs)
        cmd = [
            "mvn",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        if quiet:
            cmd.insert(1, "-q")
        print(f"ossbss: installing Apache Kafka {version} from Maven Central into {libs} ...", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=quiet, text=True)
        if proc.returncode != 0:
            raise KafkaStackError(
                f"Maven could not resolve Kafka {version} (exit {proc.returncode}); check that Maven Central "
                f"is reachable.\n{(proc.stdout or '')[-2000:]}{(proc.stderr or '')[-2000:]}"
            )
        if not any(libs.glob(f"kafka_2.13-{version}.jar")):
            raise KafkaStackError(f"Maven finished but kafka_2.13-{version}.jar is missing from {libs}")
        marker.write_text(version)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class KafkaBroker:
    """One KRaft node (broker and controller) on loopback, its data under ``data_dir``."""

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "768m"
    version: str = KAFKA_VERSION
    partitions: int = 4

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "message.max.bytes": str(8 * 1024 * 1024),
            "log.retention.hours": "48",
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.data_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self.log_file}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\n"
        )
        return path

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            *os.environ.get("OSSBSS_KAFKA_JVM_OPTS", DEFAULT_JVM_OPTS).split(),
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Install if needed, format storage on first start, start the broker and wait until it answers."""
        libs = install(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = uuid.uuid4().hex[:22]
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise KafkaStackError(f"formatting KRaft storage failed: {fmt.stdout[-1500:]}{fmt.stderr[-1500:]}")
        # The child keeps its own copy of the descriptor: closing ours at once is safe.
        with open(self.data_dir / "broker.out", "ab") as out:
            self._proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(config), heap=self.heap),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid} {self.port} {self.controller_port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KafkaStackError(
                    f"the Kafka broker exited with {self._proc.returncode} during start; see {self.log_file} "
                    f"and {self.data_dir / 'broker.out'}"
                )
            if port_open("127.0.0.1", self.port) and self._metadata_ok():
                return self
            time.sleep(0.3)
        self.stop()
        raise KafkaStackError(f"the Kafka broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def _metadata_ok(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=2)
            return bool(md.brokers)
        except Exception:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly (SIGTERM lets the broker flush and close its logs), then SIGKILL if it hangs."""
        pid = self._proc.pid if self._proc else _read_pid(self.pid_file)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self._proc):
            time.sleep(0.2)
        if _alive(pid, self._proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._proc:
            self._proc.wait(timeout=10)
        self.pid_file.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def running_broker(data_dir: Path) -> str | None:
    """The bootstrap address of a broker started earlier on ``data_dir`` and still running, if any."""
    pid_file = Path(data_dir) / "broker.pid"
    try:
        pid, port, _ = pid_file.read_text().split()
    except (OSError, ValueError):
        return None
    if _alive(int(pid), None) and port_open("127.0.0.1", int(port)):
        return f"127.0.0.1:{port}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ossbss.localstack.kafka", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["install", "start", "stop", "status"])
    parser.add_argument("--data-dir", default=str(PROJECT_ROOT / "var" / "kafka"))
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    if args.action == "install":
        print(install())
    elif args.action == "start":
        existing = running_broker(data_dir)
        if existing:
            print(existing)
            return 0
        broker = KafkaBroker(data_dir, port=args.port).start()
        print(broker.bootstrap_servers)
    elif args.action == "stop":
        KafkaBroker(data_dir, port=args.port).stop()
    else:
        found = running_broker(data_dir)
        print(found or "not running")
        return 0 if found else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
