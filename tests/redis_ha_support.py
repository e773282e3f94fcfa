"""Real highly available Redis set-ups on loopback ports, for the Sentinel and Cluster tests:
a master, a replica and three sentinels (`redis-server FILE --sentinel`), in plain text or all
in TLS under a throwaway certificate authority, or a three-master cluster (`redis-cli
--cluster create`). Every process runs in its own session with its files
in a private directory, and is killed when the test leaves the context, whatever happened.
Ports are free ones the kernel hands out, so tests may run side by side."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

SERVER = shutil.which("redis-server") or "redis-server"
CLI = shutil.which("redis-cli") or "redis-cli"
OPENSSL = shutil.which("openssl") or "openssl"
HOST = "127.0.0.1"
MASTER = "patience-ha"  # the master's name the sentinels monitor
DOWN_AFTER_MS = 1000  # the sentinels call the master down after this silence
FAILOVER_TIMEOUT_MS = 3000


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (held open together, so all distinct)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `check` (Redis errors count as not yet) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Tls:
    """A certificate authority made for one test, and a certificate it signed for 127.0.0.1
    that every server and sentinel presents; clients are not asked for certificates."""

    def __init__(self, directory: Path) -> None:
        self.ca, key = directory / "ca.crt", directory / "ca.key"
        self.cert, self.key = directory / "redis.crt", directory / "redis.key"
        request, names = directory / "redis.csr", directory / "names.ext"
        names.write_text(f"subjectAltName=IP:{HOST}\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for argv in (
            ["req", "-x509", *ec, "-keyout", key, "-out", self.ca, "-days", "1",
             "-subj", "/CN=patience test CA"],
            ["req", *ec, "-keyout", self.key, "-out", request, "-subj", f"/CN={HOST}"],
            ["x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", key, "-CAcreateserial",
             "-out", self.cert, "-days", "1", "-extfile", names],
        ):  # fmt: skip
            made = subprocess.run(
                [OPENSSL, *map(str, argv)], capture_output=True, text=True, check=False
            )
            assert made.returncode == 0, made.stderr

    def settings(self, port: int) -> list[tuple[str, str]]:
        """redis.conf's names and values: TLS only, on `port`, replication in TLS too."""
        return [
            ("port", "0"),
            ("tls-port", str(port)),
            ("tls-cert-file", str(self.cert)),
            ("tls-key-file", str(self.key)),
            ("tls-ca-cert-file", str(self.ca)),
            ("tls-auth-clients", "no"),
            ("tls-replication", "yes"),
        ]


def _settings(port: int, tls: Tls | None) -> list[tuple[str, str]]:
    return [("port", str(port))] if tls is None else tls.settings(port)


class Node:
    """One redis-server process (a server or a sentinel) on a loopback port."""

    def __init__(self, directory: Path, port: int, argv: list[str], tls: Tls | None) -> None:
        self.dir = directory
        self.port = port
        self.tls = tls
        self.log = directory / f"{port}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [SERVER, *argv], stdout=log, stderr=log, cwd=directory, start_new_session=True
            )
        wait_until(f"redis-server on port {port}", self._answers, timeout=20.0)

    def _answers(self) -> bool:
        assert self.proc.poll() is None, f"redis-server exited:\n{self.log.read_text()}"
        with self.client() as client:
            return bool(client.ping())

    def client(self) -> redis.Redis:
        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(HOST, self.port, socket_timeout=5.0, decode_responses=True, **tls)

    def kill(self) -> None:
        """kill -9: no goodbye to replicas, sentinels or clients."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(20)


def _server(directory: Path, port: int, tls: Tls | None, *extra: str) -> Node:
    listen = [arg for name, value in _settings(port, tls) for arg in (f"--{name}", value)]
    return Node(
        directory,
        port,
        [*listen, "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--repl-diskless-sync-delay", "0", *extra],
        tls,
    )  # fmt: skip


class SentinelSet:
    """A master, its replica and three sentinels watching them, each with short timeouts;
    with `tls`, every one of them speaks only TLS."""

    def __init__(self, directory: Path, stack: contextlib.ExitStack, tls: Tls | None) -> None:
        master_port, replica_port, *sentinel_ports = free_ports(5)
        self.master = _server(directory, master_port, tls)
        stack.callback(self.master.kill)
        self.replica = _server(directory, replica_port, tls, "--replicaof", HOST, str(master_port))
        stack.callback(self.replica.kill)
        self.sentinels: list[Node] = []
        for port in sentinel_ports:
            conf = directory / f"sentinel-{port}.conf"  # a sentinel rewrites its own file
            listen = "".join(f"{name} {value}\n" for name, value in _settings(port, tls))
            conf.write_text(
                f"{listen}bind {HOST}\ndir {directory}\n"
                f"sentinel monitor {MASTER} {HOST} {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            sentinel = Node(directory, port, [str(conf), "--sentinel"], tls)
            stack.callback(sentinel.kill)
            self.sentinels.append(sentinel)
        wait_until("the replica's link to the master", self._replicating)
        wait_until("the sentinels to know each other and the replica", self._acquainted)
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        self.url = f"{'rediss' if tls else 'redis'}+sentinel://{hosts}/{MASTER}"

    def _replicating(self) -> bool:
        with self.replica.client() as client:
            return bool(client.info("replication")["master_link_status"] == "up")

    def _acquainted(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                others = client.execute_command("SENTINEL", "SENTINELS", MASTER)
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER)
                if len(others) < 2 or not replicas:
                    return False
        return True

    def master_port(self) -> int:
        """The port of the master the sentinels name now."""
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)


class ClusterSet:
    """Three masters holding all 16384 slots between them, each with `replicas` replicas
    (`redis-cli --cluster create` makes the first three nodes the masters)."""

    def __init__(self, directory: Path, stack: contextlib.ExitStack, replicas: int) -> None:
        count = 3 * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes: list[Node] = []
        for port, bus in zip(ports[:count], ports[count:], strict=True):
            node = _server(
                directory,
                port,
                None,
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout", "2000",
            )  # fmt: skip
            stack.callback(node.kill)
            self.nodes.append(node)
        created = subprocess.run(
            [CLI, "--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        wait_until("the cluster to be ready, every replica in sync", self._ready)
        self.url = f"redis://{HOST}:{self.nodes[0].port}"

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                replication = client.info("replication")
                if replication["role"] != "master" and replication["master_link_status"] != "up":
                    return False
        return True

    def any_node(self) -> redis.Redis:
        """A client of the first node still running."""
        return next(node for node in self.nodes if node.proc.poll() is None).client()

    def keys(self) -> list[str]:
        """Every key in the cluster (each running node holds its own slots' keys)."""
        found: list[str] = []
        for node in self.nodes:
            if node.proc.poll() is None:
                with node.client() as client:
                    found += client.keys("*")
        return found

    def keyslot(self, key: str) -> int:
        with self.any_node() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> int:
        """The port of the master serving `slot` (as the first node still running sees it)."""
        with self.any_node() as client:
            for first, last, (_, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return int(port)
        raise AssertionError(f"slot {slot} is not served")


@contextlib.contextmanager
def sentinel_set(directory: Path, tls: Tls | None = None) -> Iterator[SentinelSet]:
    with contextlib.ExitStack() as stack:
        yield SentinelSet(directory, stack, tls)


@contextlib.contextmanager
def cluster_set(directory: Path, replicas: int = 0) -> Iterator[ClusterSet]:
    with contextlib.ExitStack() as stack:
        yield ClusterSet(directory, stack, replicas)
