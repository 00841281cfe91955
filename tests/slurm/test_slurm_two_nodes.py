"""Training across the nodes of a SLURM job, on a two-node cluster made of network namespaces of this
machine (`launchers/slurm_local.sh up --nodes 2`: nodes sdpot-n1 and sdpot-n2 at 10.213.7.11 and .12,
each with its own hostname). A 2-node x 1-task job through `hydra/launcher=slurm` must end with the
weights of one process on the same global batch (DDP, and FSDP: `trainer.strategy=fsdp`), its ranks
must really run on the two nodes and meet at the first node's address (MASTER_ADDR/PORT), and `down`
must leave no daemon, process, namespace or link behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_slurm import SLURM, TINY, _multirun, _train_file

from conftest import REPO, final_weights
from slurm_support import (  # noqa: F401 (slurm_two_nodes: the cluster fixture)
    NamespacedCluster,
    TaskWatch,
    skip_without_namespaces,
    slurm_two_nodes,
    start_namespaced_cluster,
    stop_namespaced_cluster,
)

TWO_NODES = [*SLURM, "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=1"]
BATCH = ["trainer.global_batch_size=4"]  # 2 per process x 2 processes, or 2 x 2 accumulated in one


def _strategy_reason(strategy: str, compose) -> str | None:
    """Why `trainer.strategy=<strategy>` cannot run yet (None when it can): the key is being added."""
    if strategy == "ddp":
        return None
    trainer = compose("task=offline", "model=tiny_random").trainer
    if "strategy" not in trainer:
        return (
            f"trainer.strategy does not exist in conf yet, so trainer.strategy={strategy} cannot be asked for"
        )
    return None


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    """The final weights of one process training on the same data and global batch (2 x 2 accumulated)."""
    tmp = tmp_path_factory.mktemp("one-process")
    train, run_dir = _train_file(tmp), tmp / "run"
    args = [*TINY, f"dataset.train_path={train}", *BATCH, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["grad_accum_steps"] == 2
    return final_weights(run_dir)


def _two_node_job(cluster: NamespacedCluster, tmp: Path, *overrides: str) -> tuple[Path, TaskWatch]:
    """A 2-node x 1-task training job, watched while it runs: its run directory and the watch."""
    sweep, log = tmp / "sweep", tmp / "multirun.log"
    args = [*TWO_NODES, *TINY, f"dataset.train_path={_train_file(tmp)}", *BATCH, *overrides,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    with TaskWatch([cluster.node(1), cluster.node(2)], sweep) as watch:
        done = _multirun(args, cluster.env, log)
    assert done.returncode == 0, log.read_text()[-3000:]
    return sweep / "0", watch


@pytest.fixture(scope="module")
def ddp_job(slurm_two_nodes, tmp_path_factory) -> tuple[Path, TaskWatch]:
    return _two_node_job(slurm_two_nodes, tmp_path_factory.mktemp("ddp"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_two_node_job_trains_the_model_of_one_process(
    strategy, slurm_two_nodes, one_process, request, tmp_path, compose
):
    reason = _strategy_reason(strategy, compose)
    if reason:
        pytest.skip(reason)
    if strategy == "ddp":
        job, _ = request.getfixturevalue("ddp_job")
    else:
        job, _ = _two_node_job(slurm_two_nodes, tmp_path, f"trainer.strategy={strategy}")
    summary = json.loads((job / "summary.json").read_text())
    assert (summary["num_processes"], summary["grad_accum_steps"], summary["global_batch_size"]) == (2, 1, 4)
    assert summary["steps"] == 2
    slurm = json.loads((job / "run.json").read_text())["slurm"]
    assert slurm["slurm_ntasks"] == "2" and slurm["slurm_nodelist"] == f"{slurm_two_nodes.name}-n[1-2]"
    if strategy != "ddp":
        assert yaml.safe_load((job / "config.yaml").read_text())["trainer"]["strategy"] == strategy
    two = final_weights(job)
    extra, missing = sorted(two.keys() - one_process.keys()), sorted(one_process.keys() - two.keys())
    assert not extra and not missing, (
        f"{strategy}: the 2-node final model has tensors one process's has not ({extra}) or lacks some "
        f"({missing})"
    )
    worst = max((two[k] - one_process[k]).abs().max().item() for k in one_process)
    assert worst < 1e-6, f"{strategy}: the 2-node model differs from one process's by up to {worst}"


def test_the_ranks_run_on_two_nodes_and_meet_at_the_first(slurm_two_nodes, ddp_job):
    """Each rank in its own node's namespace, hostname and address; both told the first node as
    MASTER_ADDR; rank 1 connected from its address to the first node's at MASTER_PORT."""
    cluster = slurm_two_nodes
    job, watch = ddp_job
    ranks = {s.procid: s for s in watch.seen.values()}
    assert sorted(ranks) == ["0", "1"], watch.seen
    assert len({s.job for s in ranks.values()}) == 1
    for rank, node in (("0", 1), ("1", 2)):
        assert (ranks[rank].namespace, ranks[rank].hostname) == (cluster.node(node), cluster.node(node)), (
            ranks
        )
    # what each process was told, from its own log: the first node's name and one port
    told = {}
    for rank, name in (("0", "run.log"), ("1", "run.rank1.log")):
        found = re.search(rf"Process {rank} of 2 in job \S+ \(master (\S+):(\d+)\)", (job / name).read_text())
        assert found, f"rank {rank} did not log its distribution"
        told[rank] = (found[1], int(found[2]))
    assert told["0"] == told["1"] and told["0"][0] == cluster.node(1)
    port = told["0"][1]
    # submitit's view in each task: its node's hostname and index
    logs = {p.name: p.read_text() for p in (job.parent / ".submitit").glob("*/*_log.out")}
    starts = sorted(re.findall(r"hostname=(\S+), local_rank=0\(1\), node=(\d)\(2\), global_rank=(\d)\(2\)",
                               "".join(logs.values())))  # fmt: skip
    assert starts == [(cluster.node(1), "0", "0"), (cluster.node(2), "1", "1")], logs
    # the rendezvous over the bridge: rank 1, at the second node's address, to MASTER_ADDR:MASTER_PORT
    to_master = {c for c in ranks["1"].connections if c[2:] == (cluster.address(1), port)}
    assert to_master and all(c[0] == cluster.address(2) for c in to_master), ranks["1"].connections


def test_down_leaves_no_daemon_process_namespace_or_veth(tmp_path):
    """A second two-node cluster (its own names, addresses and ports) with a job running on both
    nodes: while it is up the check sees its daemons, namespaces and links; after `down`, nothing."""
    skip_without_namespaces()
    cluster = start_namespaced_cluster(tmp_path / "cluster", "sdpod", "10.213.8", 6947)
    try:
        up = cluster.left_behind()
        for i in (1, 2):
            assert f"namespace {cluster.node(i)}" in up and f"link {cluster.node(i)}-h" in up, up
        assert "link sdpod-br" in up and sum(item.startswith("daemon pid") for item in up) == 4, up
        # a job on both nodes that would outlive the test: its tasks carry the cluster's directory
        sbatch = subprocess.run(["sbatch", "--parsable", "-N2", "-n2", "--mem=100", "-o", str(tmp_path / "job.out"),
                                 "--wrap", f"srun sh -c 'sleep 600; : {cluster.directory}'"],
                                env=cluster.env, capture_output=True, text=True)  # fmt: skip
        assert sbatch.returncode == 0, sbatch.stderr
        job = sbatch.stdout.strip()
        for _ in range(120):
            state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=cluster.env, capture_output=True,
                                   text=True).stdout.strip()  # fmt: skip
            # the task's shell in each node's namespace ("pid N in NODE: sh -c sleep 600; ...")
            tasks = {item.split()[3].rstrip(":") for item in cluster.left_behind()
                     if item.startswith("pid ") and "sh -c sleep 600" in item}  # fmt: skip
            if state == "RUNNING" and tasks == {cluster.node(1), cluster.node(2)}:
                break
            time.sleep(0.5)
        assert state == "RUNNING" and tasks == {cluster.node(1), cluster.node(2)}, (
            state,
            cluster.left_behind(),
        )
    finally:
        left = stop_namespaced_cluster(cluster)
    assert not left, left
    assert not (cluster.directory / "etc" / "netns-nodes").exists()
