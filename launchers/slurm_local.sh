#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying the SLURM path and for the tests.
#
#   launchers/slurm_local.sh install   # Debian/Ubuntu packages: slurmctld, slurmd, slurm-client, munge (root)
#   launchers/slurm_local.sh up        # start munged, slurmctld and slurmd; wait until the node is idle
#   launchers/slurm_local.sh status    # daemons, node and queue
#   launchers/slurm_local.sh down      # cancel the jobs, stop the daemons (nothing is left running)
#   eval "$(launchers/slurm_local.sh env)"   # point sinfo, sbatch and the submitit launcher at it
#
# Everything (config, keys, spool, logs, pid files) lives under one directory, $SLURM_LOCAL_DIR
# (default: .slurm-local in the repository). No systemd, no cgroups; the daemons run as the current
# user, which must be root for slurmd to start jobs. Settings chosen for development: jobs that ask
# for no memory get 1 GiB per CPU instead of the whole node; a requeued job may start again after
# about 10 s instead of Slurm's default 2 minutes; finished jobs stay visible for an hour, because
# `sacct` here is a stand-in that answers from `scontrol show job` (there is no accounting daemon,
# and submitit asks `sacct` whether a job has ended).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SLURM_LOCAL_DIR:-$REPO/.slurm-local}
CONF="$DIR/etc/slurm.conf"
SOCKET="$DIR/munge/socket"
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
DAEMONS=(slurmd slurmctld munged)

die() { echo "slurm_local: $*" >&2; exit 1; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
              && command -v sbatch >/dev/null; }

pid_of() { local f="$DIR/run/$1.pid"; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

do_install() {
  installed && { echo "slurm_local: SLURM and munge are installed"; return; }
  [ "$(id -u)" = 0 ] || die "installing needs root (apt-get); run: sudo $0 install"
  command -v apt-get >/dev/null || die "no apt-get here: install slurmctld, slurmd, slurm-client and munge with your package manager"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  echo "slurm_local: installed $(slurmctld -V)"
}

write_conf() {
  local node=$1 cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$CONF" <<EOF
# Written by launchers/slurm_local.sh: one node, this machine.
ClusterName=sdpo-local
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCKET},cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
JobRequeue=1
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=30
Waittime=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
}

# submitit asks `sacct -o JobID,State,... --parsable2 -j ID,...` for job states; without an accounting
# daemon sacct has nothing, so this stand-in answers the same question from `scontrol show job`.
write_sacct() {
  cat > "$DIR/bin/sacct" <<'EOF'
#!/usr/bin/env bash
format="JobID,State"; jobs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--format) format=$2; shift 2 ;;
    --format=*) format=${1#*=}; shift ;;
    -j|--jobs) IFS=, read -ra more <<< "$2"; jobs+=("${more[@]}"); shift 2 ;;
    --jobs=*) IFS=, read -ra more <<< "${1#*=}"; jobs+=("${more[@]}"); shift ;;
    *) shift ;;
  esac
done
echo "${format//,/|}"
for job in "${jobs[@]}"; do scontrol -o show job "$job" 2>/dev/null || true; done | awk -v format="$format" '
  {
    split("", field)
    for (i = 1; i <= NF; i++) { eq = index($i, "="); if (eq) field[substr($i, 1, eq - 1)] = substr($i, eq + 1) }
    id = field["JobId"]
    if (field["ArrayJobId"] != "" && field["ArrayTaskId"] != "") {
      task = field["ArrayTaskId"]; if (task ~ /[-,%]/) task = "[" task "]"
      id = field["ArrayJobId"] "_" task
    }
    if (id in printed) next
    printed[id] = 1
    n = split(format, names, ","); out = ""
    for (i = 1; i <= n; i++) {
      name = names[i]
      value = name == "JobID" ? id : name == "State" ? field["JobState"] : name == "NodeList" ? field["NodeList"] : ""
      if (value == "(null)") value = "None assigned"
      out = out (i > 1 ? "|" : "") value
    }
    print out
  }'
EOF
  chmod +x "$DIR/bin/sacct"
}

do_up() {
  installed || die "SLURM is not installed: run $0 install"
  if [ -n "$(pid_of slurmctld || true)" ]; then echo "slurm_local: already up ($DIR)"; return; fi
  local node
  node=$(hostname -s)
  mkdir -p "$DIR"/{etc,munge,state,spool,log,run,bin}
  chmod 700 "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  write_conf "$node"
  write_sacct
  export SLURM_CONF=$CONF
  /usr/sbin/munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  local state=""
  for _ in $(seq 1 120); do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1 || true)
    if [ "$state" = idle ] || [ "$state" = mix ] || [ "$state" = alloc ]; then
      echo "slurm_local: up, node $node ($(nproc) CPUs), partition debug; files in $DIR"
      return
    fi
    sleep 0.5
  done
  tail -n 20 "$DIR"/log/*.log >&2 || true
  do_down >/dev/null 2>&1 || true
  die "the node did not become idle (state '$state'); logs above"
}

do_down() {
  export SLURM_CONF=$CONF
  if [ -n "$(pid_of slurmctld || true)" ]; then
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 90); do  # slurmd kills the jobs' processes (after KillWait at most)
      [ -z "$(squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for daemon in "${DAEMONS[@]}"; do
    local pid
    pid=$(pid_of "$daemon" || true)
    [ -n "$pid" ] || { rm -f "$DIR/run/$daemon.pid"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DIR/run/$daemon.pid"
  done
  # slurmd runs jobs without cgroups: a step daemon still alive now would leave its job running
  pkill -KILL -f "^slurmstepd: \[" 2>/dev/null || true
  echo "slurm_local: down"
}

do_status() {
  local up=0
  for daemon in munged slurmctld slurmd; do
    local pid
    pid=$(pid_of "$daemon" || true)
    if [ -n "$pid" ]; then echo "$daemon: running (pid $pid)"; up=$((up + 1)); else echo "$daemon: stopped"; fi
  done
  [ "$up" = 3 ] || return 1
  export SLURM_CONF=$CONF PATH="$DIR/bin:$PATH"
  sinfo -N -o '%N %t %c %m'
  squeue -o '%.12i %.20j %.8T %.10M %R'
}

case "${1:-}" in
  install) do_install ;;
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  env) printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$CONF" "$DIR/bin" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
