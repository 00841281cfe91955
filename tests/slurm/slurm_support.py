"""A real SLURM cluster on this machine (launchers/slurm_local.sh), brought up once for these tests
on ports of its own and brought down after them, leaving no process behind; and a two-node one, each
node a network namespace (`slurm_local.sh up --nodes 2`), with a watch on where a job's tasks run."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "launchers" / "slurm_local.sh"
NEEDED = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol")


def _left_behind(daemons: list[int], directory: Path) -> list[str]:
    """Daemons still alive, and any process whose command line names `directory` (the jobs' files)."""
    alive = [f"daemon pid {pid}" for pid in daemons if Path(f"/proc/{pid}").exists()]
    out = subprocess.run(["pgrep", "-a", "-f", str(directory)], capture_output=True, text=True)
    return alive + [line for line in out.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment that points sbatch, sinfo and submitit at the test cluster."""
    missing = [name for name in NEEDED if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): run `sudo {SCRIPT} install`")
    if os.geteuid() != 0:
        pytest.skip("slurmd needs root to start jobs as the submitting user on this single-node cluster")
    base = tmp_path_factory.mktemp("slurm-local")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(base), "SLURM_LOCAL_CTLD_PORT": "6917",
           "SLURM_LOCAL_SLURMD_PORT": "6918"}  # fmt: skip
    up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    exports = subprocess.run([str(SCRIPT), "env"], env=env, capture_output=True, text=True, check=True).stdout
    env["SLURM_CONF"] = str(base / "etc" / "slurm.conf")
    env["PATH"] = f"{base / 'bin'}:{env['PATH']}"
    assert str(base / "bin") in exports and env["SLURM_CONF"] in exports
    daemons = [int(p.read_text()) for p in (base / "run").glob("*.pid")]
    assert len(daemons) == 3
    try:
        yield env
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        deadline = time.monotonic() + 30
        root = tmp_path_factory.getbasetemp()
        while _left_behind(daemons, root) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _left_behind(daemons, root)
        assert not left, left


# --- A two-node cluster: each node a network namespace of this machine (`slurm_local.sh up --nodes 2`)

NETNS_TOOLS = ("ip", "nsenter", "unshare")


@dataclass
class NamespacedCluster:
    """A cluster of `slurm_local.sh up --nodes N`: its environment, files and names."""

    env: dict[str, str]
    directory: Path
    name: str  # node i is the namespace and host f"{name}-n{i}"
    net: str  # node i has the address f"{net}.{10 + i}", slurmctld f"{net}.1"
    nodes: int
    daemons: list[int] = field(default_factory=list)
    namespace_inodes: dict[int, str] = field(default_factory=dict)

    def node(self, i: int) -> str:
        return f"{self.name}-n{i}"

    def address(self, i: int) -> str:
        return f"{self.net}.{10 + i}"

    def script(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def left_behind(self) -> list[str]:
        """What of this cluster exists: daemons, processes naming its directory or in its nodes' network
        namespaces (jobs included), the namespaces, links named after its nodes and bridge."""
        found = _left_behind(self.daemons, self.directory)
        for proc in Path("/proc").iterdir():
            try:
                inode = os.stat(proc / "ns" / "net").st_ino if proc.name.isdigit() else None
                if inode in self.namespace_inodes:
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    found.append(f"pid {proc.name} in {self.namespace_inodes[inode]}: {command}")
            except OSError:  # gone meanwhile
                pass
        namespaces = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
        found += [f"namespace {line.split()[0]}" for line in namespaces.splitlines()
                  if line.split() and line.split()[0].startswith(f"{self.name}-")]  # fmt: skip
        links = subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
        ).stdout
        found += [f"link {line.split(':')[1].strip().split('@')[0]}" for line in links.splitlines()
                  if line.split(":")[1].strip().startswith(f"{self.name}-")]  # fmt: skip
        return found


def skip_without_namespaces() -> None:
    """Skip (with the reason) where SLURM, root or network namespaces, bridges and veths are missing."""
    missing = [name for name in NEEDED if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): run `sudo {SCRIPT} install`")
    if os.geteuid() != 0:
        pytest.skip("the two-node cluster needs root (network namespaces, a bridge, veth pairs, slurmd)")
    tools = [name for name in NETNS_TOOLS if shutil.which(name) is None]
    if tools:
        pytest.skip(f"the two-node cluster needs {', '.join(tools)} (iproute2, util-linux)")
    # a namespace of its own, gone when the command ends, in which a bridge and a veth pair are made
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link add b0 type bridge && "
                            "ip link add v0 type veth peer name v1"], capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(
            f"this machine cannot make network namespaces, bridges and veth pairs: {probe.stderr.strip()}"
        )


def start_namespaced_cluster(
    base: Path, name: str, net: str, ctld_port: int, nodes: int = 2
) -> NamespacedCluster:
    env = {**os.environ, "SLURM_LOCAL_DIR": str(base), "SLURM_LOCAL_CTLD_PORT": str(ctld_port),
           "SLURM_LOCAL_SLURMD_PORT": str(ctld_port + 1), "SLURM_LOCAL_NAME": name, "SLURM_LOCAL_NET": net}  # fmt: skip
    cluster = NamespacedCluster(env=env, directory=base, name=name, net=net, nodes=nodes)
    up = cluster.script("up", "--nodes", str(nodes))
    assert up.returncode == 0, up.stdout + up.stderr
    env["SLURM_CONF"] = str(base / "etc" / "slurm.conf")
    env["PATH"] = f"{base / 'bin'}:{env['PATH']}"
    cluster.daemons = [int(p.read_text()) for p in (base / "run").glob("*.pid")]
    cluster.namespace_inodes = _namespace_inodes([cluster.node(i) for i in range(1, nodes + 1)])
    assert len(cluster.daemons) == 2 + nodes, sorted(p.name for p in (base / "run").glob("*.pid"))
    return cluster


def stop_namespaced_cluster(cluster: NamespacedCluster) -> list[str]:
    """`down`, then what is left of the cluster after up to 30 s (an empty list when all is gone)."""
    down = cluster.script("down")
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 30
    while cluster.left_behind() and time.monotonic() < deadline:
        time.sleep(0.5)
    return cluster.left_behind()


@pytest.fixture(scope="module")
def slurm_two_nodes(tmp_path_factory) -> NamespacedCluster:
    """Two nodes, sdpot-n1 (10.213.7.11) and sdpot-n2 (10.213.7.12), on ports 6927/6928: brought up
    for a test module, brought down after it, leaving nothing behind."""
    skip_without_namespaces()
    cluster = start_namespaced_cluster(tmp_path_factory.mktemp("slurm-two-nodes"), "sdpot", "10.213.7", 6927)
    try:
        yield cluster
    finally:
        left = stop_namespaced_cluster(cluster)
        assert not left, left


# --- Where a job's tasks run: their network namespaces, ranks and TCP connections, watched live


def _namespace_inodes(names: list[str]) -> dict[int, str]:
    return {os.stat(f"/run/netns/{name}").st_ino: name for name in names}


def _tcp_endpoint(text: str) -> tuple[str, int]:
    """An address:port of /proc/net/tcp{,6} (hex, 32-bit words in host order) as ("a.b.c.d", port)."""
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def established_connections(pid: int) -> set[tuple[str, int, str, int]]:
    """(local address, port, remote address, port) of the established TCP connections in the network
    namespace of process `pid`."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01":  # TCP_ESTABLISHED
                found.add((*_tcp_endpoint(fields[1]), *_tcp_endpoint(fields[2])))
    return found


@dataclass
class TaskSighting:
    namespace: str
    hostname: str
    procid: str
    job: str
    connections: set[tuple[str, int, str, int]] = field(default_factory=set)


class TaskWatch:
    """While a job runs, notes every submitit task process (`python -m submitit.core._submit FOLDER`,
    FOLDER under `marker`) found in the given network namespaces: where it runs, its SLURM_PROCID and
    job id (from its environment) and the TCP connections of its namespace."""

    def __init__(self, namespaces: list[str], marker: Path, every: float = 0.2):
        self.inodes, self.marker, self.every = _namespace_inodes(namespaces), str(marker), every
        self.seen: dict[int, TaskSighting] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TaskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        self._look(int(proc.name), proc)
                    except OSError:  # gone meanwhile
                        pass
            self._stop.wait(self.every)

    def _look(self, pid: int, proc: Path) -> None:
        namespace = self.inodes.get(os.stat(proc / "ns" / "net").st_ino)
        if namespace is None:
            return
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        if b"submitit.core._submit" not in argv or not any(self.marker.encode() in a for a in argv):
            return
        if not Path(argv[0].decode()).name.startswith("python"):
            return  # srun, whose command line names the same module
        if pid not in self.seen:
            environ = dict(
                item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item
            )
            hostname = subprocess.run(["nsenter", f"--uts=/proc/{pid}/ns/uts", "hostname"], capture_output=True,
                                      text=True).stdout.strip()  # fmt: skip
            self.seen[pid] = TaskSighting(namespace, hostname, environ.get("SLURM_PROCID", ""),
                                          environ.get("SLURM_JOB_ID", ""))  # fmt: skip
        self.seen[pid].connections |= established_connections(pid)
