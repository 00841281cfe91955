#!/usr/bin/env bash
# A real SLURM cluster on this machine, for trying the SLURM path and for the tests.
#
#   launchers/slurm_local.sh install   # Debian/Ubuntu packages: slurmctld, slurmd, slurm-client, munge (root)
#   launchers/slurm_local.sh up        # start munged, slurmctld and slurmd; wait until the node is idle
#   launchers/slurm_local.sh up --nodes 2   # N nodes, each a network namespace with its own address
#   launchers/slurm_local.sh status    # daemons, nodes and queue
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
#
# With --nodes N (2 to 8) the nodes are $NAME-n1 ... $NAME-nN (NAME: $SLURM_LOCAL_NAME, default sdpo):
# each node is a network namespace of that name (`ip netns`) with the address $NET.(10+i) (NET:
# $SLURM_LOCAL_NET, default 10.213.0) on a bridge $NAME-br, where slurmctld listens at $NET.1. Each
# node's slurmd runs in the node's network namespace with a hostname of its own (the node's name, in
# a UTS namespace) and $DIR/etc/hosts, which names every node, mounted over /etc/hosts (a mount
# namespace); the job steps it starts inherit all three. The nodes share this machine's CPUs (one
# CPU each in slurm.conf) and files. `down` removes the namespaces, the bridge and its veth pairs
# again. Needs root, `ip`, `nsenter` and `unshare`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SLURM_LOCAL_DIR:-$REPO/.slurm-local}
CONF="$DIR/etc/slurm.conf"
SOCKET="$DIR/munge/socket"
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
NAME=${SLURM_LOCAL_NAME:-sdpo}
NET=${SLURM_LOCAL_NET:-10.213.0}
NODES_FILE="$DIR/etc/netns-nodes"  # the namespaced nodes of this cluster, written before any is made

die() { echo "slurm_local: $*" >&2; exit 1; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
              && command -v sbatch >/dev/null && command -v ip >/dev/null; }

pid_of() { local f="$DIR/run/$1.pid"; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

do_install() {
  installed && { echo "slurm_local: SLURM and munge are installed"; return; }
  [ "$(id -u)" = 0 ] || die "installing needs root (apt-get); run: sudo $0 install"
  command -v apt-get >/dev/null || die "no apt-get here: install slurmctld, slurmd, slurm-client, munge and iproute2 with your package manager"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge iproute2 >/dev/null
  echo "slurm_local: installed $(slurmctld -V)"
}

# slurm.conf for $1 nodes: one (this machine, at 127.0.0.1) or the namespaced nodes $NAME-n1 ...
write_conf() {
  local nodes=$1 host ctld_addr cpus mem_mb node_lines partition spool pidfile logfile what i
  host=$(hostname -s)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  if [ "$nodes" = 1 ]; then
    what="one node, this machine"
    ctld_addr=127.0.0.1 cpus=$(nproc) partition=$host
    node_lines="NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN"
    spool=$DIR/spool pidfile=$DIR/run/slurmd.pid logfile=$DIR/log/slurmd.log
  else
    what="$nodes nodes, each a network namespace of this machine"
    ctld_addr=$NET.1 partition="$NAME-n[1-$nodes]" node_lines=""
    for i in $(seq 1 "$nodes"); do
      node_lines+="NodeName=$NAME-n$i NodeAddr=$NET.$((10 + i)) CPUs=1 RealMemory=$((mem_mb / nodes)) State=UNKNOWN"$'\n'
    done
    spool=$DIR/spool/%n pidfile=$DIR/run/slurmd-%n.pid logfile=$DIR/log/slurmd-%n.log
  fi
  cat > "$CONF" <<EOF
# Written by launchers/slurm_local.sh: ${what}.
ClusterName=sdpo-local
SlurmctldHost=${host}(${ctld_addr})
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCKET},cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=${spool}
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=${pidfile}
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=${logfile}
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
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
${node_lines%$'\n'}
PartitionName=debug Nodes=${partition} Default=YES MaxTime=INFINITE State=UP
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

# The namespaced nodes: checks before anything is made.
check_netns() {
  local nodes=$1 i
  [ "$(id -u)" = 0 ] || die "--nodes $nodes needs root (network namespaces, a bridge, veth pairs)"
  command -v ip >/dev/null || die "--nodes $nodes needs \`ip\` (iproute2)"
  command -v unshare >/dev/null && command -v nsenter >/dev/null \
    || die "--nodes $nodes needs \`unshare\` and \`nsenter\` (util-linux)"
  [[ "$NAME" =~ ^[a-z][a-z0-9]{0,7}$ ]] \
    || die "SLURM_LOCAL_NAME must be 1 to 8 lower-case letters or digits, starting with a letter (got '$NAME')"
  [[ "$NET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] \
    || die "SLURM_LOCAL_NET must be the first three numbers of an IPv4 /24, like 10.213.0 (got '$NET')"
  ! ip -4 -o addr show | grep -qF " $NET." \
    || die "addresses in $NET.0/24 are already in use on this machine: choose another SLURM_LOCAL_NET"
  ! ip link show "$NAME-br" >/dev/null 2>&1 \
    || die "a link $NAME-br exists already (another cluster, or one not brought down): choose another SLURM_LOCAL_NAME"
  for i in $(seq 1 "$nodes"); do
    ! ip netns list | awk '{print $1}' | grep -qx "$NAME-n$i" \
      || die "network namespace $NAME-n$i exists already: bring its cluster down or choose another SLURM_LOCAL_NAME"
  done
}

# The bridge $NAME-br at $NET.1 and, per node, a network namespace joined to it by a veth pair, with
# an address; the hosts file of the nodes. What is made is recorded first in $NODES_FILE, so that
# `down` removes it even after a failure half-way.
net_up() {
  local nodes=$1 i ns
  {
    echo "bridge $NAME-br"
    for i in $(seq 1 "$nodes"); do echo "node $NAME-n$i"; done
  } > "$NODES_FILE"
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n'
    for i in $(seq 1 "$nodes"); do printf '%s\t%s\n' "$NET.$((10 + i))" "$NAME-n$i"; done
  } > "$DIR/etc/hosts"
  ip link add "$NAME-br" type bridge
  ip addr add "$NET.1/24" dev "$NAME-br"
  ip link set "$NAME-br" up
  for i in $(seq 1 "$nodes"); do
    ns=$NAME-n$i
    ip netns add "$ns"
    ip link add "$ns-h" type veth peer name "$ns-c"
    ip link set "$ns-c" netns "$ns"
    ip link set "$ns-h" master "$NAME-br"
    ip link set "$ns-h" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$ns-c" name eth0
    ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

# Every process in the node namespaces (slurmd, step daemons, job tasks), then the namespaces, the
# veth pairs and the bridge.
net_down() {
  [ -s "$NODES_FILE" ] || return 0
  local kind value ns pids bridge=""
  while read -r kind value; do
    case "$kind" in
      bridge) bridge=$value ;;
      node)
        ns=$value
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
          pids=$(ip netns pids "$ns" 2>/dev/null | xargs)
          if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for _ in $(seq 1 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
            pids=$(ip netns pids "$ns" 2>/dev/null | xargs)
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
            for _ in $(seq 1 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
          fi
          ip netns del "$ns"
        fi
        if ip link show "$ns-h" >/dev/null 2>&1; then ip link del "$ns-h" 2>/dev/null || true; fi
        ;;
    esac
  done < "$NODES_FILE"
  if [ -n "$bridge" ] && ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  rm -f "$NODES_FILE"
}

netns_nodes() { if [ -s "$NODES_FILE" ]; then awk '$1 == "node" {print $2}' "$NODES_FILE"; fi; }

do_up() {
  local nodes=1 i ns
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes=${2:-}; shift $(( $# > 1 ? 2 : 1 )) ;;
      --nodes=*) nodes=${1#*=}; shift ;;
      *) die "up: unknown option '$1' (expected --nodes N)" ;;
    esac
  done
  [[ "$nodes" =~ ^[1-8]$ ]] || die "up: --nodes must be a number from 1 to 8 (got '$nodes')"
  installed || die "SLURM is not installed: run $0 install"
  if [ -n "$(pid_of slurmctld || true)" ]; then
    local have
    have=$(netns_nodes | wc -l); [ "$have" -gt 0 ] || have=1
    [ "$have" = "$nodes" ] || die "already up with $have node(s) in $DIR: run $0 down first"
    echo "slurm_local: already up ($DIR)"
    return
  fi
  [ "$nodes" = 1 ] || check_netns "$nodes"
  [ ! -s "$NODES_FILE" ] || net_down  # left by an earlier cluster in this directory
  trap 'echo "slurm_local: up failed; removing what it started" >&2; do_down >/dev/null 2>&1 || true' EXIT
  mkdir -p "$DIR"/{etc,munge,state,spool,log,run,bin}
  chmod 700 "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  write_conf "$nodes"
  write_sacct
  export SLURM_CONF=$CONF
  /usr/sbin/munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
  if [ "$nodes" = 1 ]; then
    /usr/sbin/slurmctld -i
    /usr/sbin/slurmd
  else
    net_up "$nodes"
    /usr/sbin/slurmctld -i
    for i in $(seq 1 "$nodes"); do
      ns=$NAME-n$i
      mkdir -p "$DIR/spool/$ns"
      # the node's network, hostname (slurmd finds its NodeName from it) and /etc/hosts; `ip netns exec`
      # is not used because it mounts a /sys of its own, without the cgroup file system slurmd wants
      nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private /bin/sh -c \
        'mount --bind "$2" /etc/hosts && hostname "$1" && exec /usr/sbin/slurmd' slurmd "$ns" "$DIR/etc/hosts"
    done
  fi
  local states=""
  for _ in $(seq 1 120); do
    states=$(sinfo -h -N -o '%t' 2>/dev/null | xargs || true)
    if [ "$(sinfo -h -N -o '%t' 2>/dev/null | grep -cE '^(idle|mix|alloc)$')" = "$nodes" ]; then
      trap - EXIT
      if [ "$nodes" = 1 ]; then
        echo "slurm_local: up, node $(hostname -s) ($(nproc) CPUs), partition debug; files in $DIR"
      else
        echo "slurm_local: up, nodes $NAME-n[1-$nodes] at $NET.11-$NET.$((10 + nodes)) (1 CPU each)," \
             "slurmctld at $NET.1, partition debug; files in $DIR"
      fi
      return
    fi
    sleep 0.5
  done
  tail -n 20 "$DIR"/log/*.log >&2 || true
  die "the nodes did not all become idle (states: '$states'); logs above"
}

stop_daemons() {  # $@: pid files' names in $DIR/run, without .pid; all signalled at once (each takes ~2 s)
  local name pid pids=()
  for name in "$@"; do
    pid=$(pid_of "$name" || true)
    [ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); }
  done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$DIR/run/$name.pid"; done
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
  local file slurmds=()
  for file in "$DIR"/run/slurmd*.pid; do [ -e "$file" ] && slurmds+=("$(basename "$file" .pid)"); done
  [ "${#slurmds[@]}" = 0 ] || stop_daemons "${slurmds[@]}"
  stop_daemons slurmctld munged
  # job processes that outlived their step (slurmd tracks them by parentage only; an orphaned batch
  # script and its srun were seen after a requeue under load): their environment names this slurm.conf
  local jobs
  jobs=$(grep -lzxF "SLURM_CONF=$CONF" /proc/[0-9]*/environ 2>/dev/null | xargs -r grep -lz '^SLURM_JOB_ID=' 2>/dev/null \
         | cut -d/ -f3 | grep -vx "$$" | xargs || true)
  # shellcheck disable=SC2086
  [ -z "$jobs" ] || kill -KILL $jobs 2>/dev/null || true
  if [ -s "$NODES_FILE" ]; then
    net_down  # every process left in the nodes' namespaces, then the network
  else
    # slurmd runs jobs without cgroups: a step daemon still alive now would leave its job running
    # (only those in this network namespace: a namespaced cluster's are its own)
    local pid here
    here=$(readlink /proc/self/ns/net)
    for pid in $(pgrep -f '^slurmstepd: \[' || true); do
      [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$here" ] && kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  echo "slurm_local: down"
}

do_status() {
  local up=0 daemon pid ns
  local daemons=(munged slurmctld)
  if [ -s "$NODES_FILE" ]; then
    for ns in $(netns_nodes); do daemons+=("slurmd-$ns"); done
  else
    daemons+=(slurmd)
  fi
  for daemon in "${daemons[@]}"; do
    pid=$(pid_of "$daemon" || true)
    if [ -n "$pid" ]; then echo "$daemon: running (pid $pid)"; up=$((up + 1)); else echo "$daemon: stopped"; fi
  done
  for ns in $(netns_nodes); do
    echo "namespace $ns: $(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
  done
  [ "$up" = "${#daemons[@]}" ] || return 1
  export SLURM_CONF=$CONF PATH="$DIR/bin:$PATH"
  sinfo -N -o '%N %t %c %m'
  squeue -o '%.12i %.20j %.8T %.10M %R'
}

case "${1:-}" in
  install) do_install ;;
  up) shift; do_up "$@" ;;
  down) do_down ;;
  status) do_status ;;
  env) printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$CONF" "$DIR/bin" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
