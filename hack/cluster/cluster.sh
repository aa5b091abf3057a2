#!/usr/bin/env bash
# cluster.sh — a real single-node Kubernetes cluster on this machine, and its clean removal.
#
# Usage: hack/cluster/cluster.sh up|down|status|env
#
# up      installs the Debian packages it needs (containerd, runc, CNI plugins, iptables,
#         conntrack), builds or reuses the Kubernetes binaries in bin/k8s (hack/k8s-binaries.sh),
#         records the host's state, creates a CA and certificates, a host-only bridge carrying the
#         node IP, the CNI and containerd configuration, starts etcd, kube-apiserver,
#         kube-controller-manager, kube-scheduler, containerd, kubelet and kube-proxy, imports the
#         locally built images (at least pause), waits for the node to be Ready and writes a
#         kubeconfig. Running it again on a running cluster checks it and changes nothing.
# down    stops everything it started (by the pid files it wrote, and the containers' processes
#         by their cgroups and shims), then puts the host back as recorded by up: mounts,
#         network links, iptables/nftables rules, sysctls, cgroups and directories. It ends by
#         comparing the host with the record and prints every difference it could not undo.
# status  shows the processes, the node and the pods.
# env     prints `export KUBECONFIG=...` for eval.
# import-images  loads every tarball in $SPLICE_IMAGES_DIR into the running cluster's containerd.
# running exits 0 when the cluster's containerd and kube-apiserver run.
#
# Everything the cluster writes lives in $SPLICE_CLUSTER_DIR (default .local/cluster in the
# repository), except what the kubelet and containerd insist on (/var/log/pods,
# /var/log/containers, /run/containerd/s for shim sockets, kubepods cgroups, sysctls): up records
# those and down restores them. The last run's logs are kept in .local/cluster-logs.
#
# All traffic stays on this machine: the API server, kubelet and NodePorts bind to the bridge
# address only, and mangle FORWARD rules drop anything from (or to) the pod range that would cross
# any interface other than the bridge. No image is ever pulled: the sandbox image is the locally
# built pause image, and every image the cluster runs is built by hack/images.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
BIN="${K8S_BIN:-$repo/bin/k8s}"
STATE="${SPLICE_CLUSTER_DIR:-$repo/.local/cluster}"
LOGKEEP="${SPLICE_CLUSTER_LOGS:-$repo/.local/cluster-logs}"
IMAGES_DIR="${SPLICE_IMAGES_DIR:-$repo/.local/images}"
BRIDGE="${SPLICE_BRIDGE:-splice0}"
# The node IP, the bridge's address and the pods' gateway.
NODE_IP="${SPLICE_NODE_IP:-10.88.0.1}"
POD_CIDR="${SPLICE_POD_CIDR:-10.88.0.0/16}"
POD_RANGE_START="${SPLICE_POD_RANGE_START:-10.88.1.1}"
POD_RANGE_END="${SPLICE_POD_RANGE_END:-10.88.255.254}"
SERVICE_CIDR="${SPLICE_SERVICE_CIDR:-10.96.0.0/16}"
KUBERNETES_SVC_IP="${SPLICE_KUBERNETES_SVC_IP:-10.96.0.1}"
NODE_NAME="${SPLICE_NODE_NAME:-splice-node}"
APISERVER_PORT="${SPLICE_APISERVER_PORT:-6443}"
# etcd on loopback, away from 2379 so an etcd someone else runs here is never touched.
ETCD_CLIENT_PORT="${SPLICE_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${SPLICE_ETCD_PEER_PORT:-12380}"
PAUSE_IMAGE="${SPLICE_PAUSE_IMAGE:-localhost/splice/pause:3.10}"
DEB_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack nftables)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# Paths outside $STATE that the cluster's parts create; down removes those that did not exist
# before up.
HOST_PATHS=(
  /var/log/pods /var/log/containers /run/containerd /var/lib/kubelet /var/lib/cni /etc/cni
  /opt/cni /opt/containerd /var/lib/containerd /run/netns /var/run/netns /etc/kubernetes
  /var/run/kubernetes /run/kubernetes /usr/libexec/kubernetes /var/lib/kube-proxy
  /run/xtables.lock /run/runc /var/run/runc /run/calico /var/lib/dockershim
  /run/mount
)
# Sysctls that the kubelet, kube-proxy and the CNI bridge plugin are known to set; down
# restores them. (Every other sysctl is compared too and reported if it changed.)
SYSCTLS=(
  kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding
  net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
)
# Sysctls that change on their own; never compared.
VOLATILE_SYSCTLS='^(kernel\.random\.|kernel\.ns_last_pid|kernel\.pty\.nr|fs\.(dentry-state|inode-nr|inode-state|file-nr|aio-nr|quota\.)|net\.netfilter\.nf_conntrack_count|kernel\.sched_domain|net\.ipv4\.tcp_mem|net\.ipv4\.udp_mem|net\.ipv4\.tcp_rmem|net\.ipv4\.tcp_wmem|vm\.stat_|kernel\.perf_event|kernel\.tainted|fs\.binfmt_misc|dev\.cdrom|kernel\.usermodehelper|net\.ipv6\.route\.|net\.ipv4\.route\.|kernel\.core_pipe|kernel\.hung_task|fs\.mqueue|vm\.nr_|fs\.pipe-user-pages)'

PKI="$STATE/pki"
ETC="$STATE/etc"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
BEFORE="$STATE/host-before"
RUN="$STATE/run"
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")

t0=$SECONDS
log() { printf '\033[1m[cluster %3ds]\033[0m %s\n' "$((SECONDS - t0))" "$*" >&2; }
warn() { printf '\033[1;33m[cluster %3ds] warning:\033[0m %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { printf '\033[1;31m[cluster %3ds] error:\033[0m %s\n' "$((SECONDS - t0))" "$*" >&2; exit 1; }

require_root() { [ "$(id -u)" -eq 0 ] || die "run as root: the cluster needs a bridge, iptables, mounts and cgroups"; }

# --- processes ---------------------------------------------------------------------------------

pid_of() { local f="$PIDS/$1.pid"; [ -f "$f" ] && cat "$f"; }
# running PID: the process exists and is not a zombie waiting for its new parent to reap it.
running() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() {
  local pid; pid="$(pid_of "$1")" || return 1
  running "$pid" && [ "$(readlink "/proc/$pid/exe" 2>/dev/null | sed 's/ (deleted)$//')" = "$(cat "$PIDS/$1.exe" 2>/dev/null)" ]
}

# start NAME BINARY ARGS... runs BINARY in its own session, logging to $LOGS/NAME.log.
start() {
  local name="$1"; shift
  if alive "$name"; then log "$name already running (pid $(pid_of "$name"))"; return; fi
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$PIDS/$name.pid"
  readlink -f "$1" > "$PIDS/$name.exe"
  log "started $name (pid $pid, log $LOGS/$name.log)"
}

# stop NAME: TERM, then KILL after a grace period; only ever the pid this script recorded.
stop() {
  local name="$1" grace="${2:-10}" pid
  pid="$(pid_of "$name")" || return 0
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < grace * 10; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then warn "$name (pid $pid) ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.exe"
}

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local start=$SECONDS last=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then return 1; fi
    if ((SECONDS - last >= 10)); then log "  … waiting for $what ($((SECONDS - start))s)"; last=$SECONDS; fi
    sleep 0.5
  done
}

# --- the host's state --------------------------------------------------------------------------

# normalize_save: iptables-save output without comments and counters (never fails).
normalize_save() { sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]/[0:0]/'; }

# snapshot DIR: everything down must restore or check.
snapshot() {
  local d="$1"; mkdir -p "$d"
  sysctl -a 2>/dev/null | grep -vE "$VOLATILE_SYSCTLS" | grep -vE '^net\.(ipv4|ipv6)\.(conf|neigh)\.(veth|cni|'"$BRIDGE"')' | sort > "$d/sysctl" || true
  awk '{print $5, $9, $10}' /proc/self/mountinfo | sort > "$d/mounts"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort > "$d/links"
  ip -o addr show | awk '{print $2, $3, $4}' | sort > "$d/addrs"
  ip route show table all 2>/dev/null | sort > "$d/routes"
  if command -v nft >/dev/null; then nft list ruleset > "$d/nft" 2>/dev/null || true; nft list tables 2>/dev/null | sort > "$d/nft-tables" || true; fi
  local s
  for s in iptables-legacy-save ip6tables-legacy-save; do
    if command -v "$s" >/dev/null; then "$s" 2>/dev/null | normalize_save > "$d/$s"; fi
  done
  : > "$d/paths"
  local p; for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p" >> "$d/paths"; done
  find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d 2>/dev/null | sort > "$d/cgroups"
  ls -A / /etc /var/lib /var/log /run /opt 2>/dev/null > "$d/toplevel" || true
}

record_host() {
  if [ -f "$BEFORE/complete" ]; then return; fi
  log "recording the host's state (restored by down) in $BEFORE"
  snapshot "$BEFORE"
  local k; : > "$BEFORE/sysctl-restore"
  for k in "${SYSCTLS[@]}"; do
    v="$(sysctl -n "$k" 2>/dev/null)" && printf '%s\t%s\n' "$k" "$v" >> "$BEFORE/sysctl-restore"
  done
  touch "$BEFORE/complete"
}

# --- provisioning ------------------------------------------------------------------------------

install_packages() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return
  log "installing Debian packages: ${missing[*]}"
  # No daemon is started by the packages' scripts: this harness runs containerd itself.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f "$policy"
  log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${missing[@]}")"
}

build_binaries() {
  local missing=() c
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || missing+=("$c"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "building Kubernetes v$K8S_VERSION components from the Go module proxy: ${missing[*]} (about 10 minutes on 2 cores with a cold cache; cached in $BIN)"
  fi
  K8S_VERSION="$K8S_VERSION" ETCD_VERSION="$ETCD_VERSION" "$repo/hack/k8s-binaries.sh" "$BIN" "${COMPONENTS[@]}"
}

# cert NAME CN O [SAN]: a key and a certificate signed by the cluster CA.
cert() {
  local name="$1" cn="$2" org="$3" san="${4:-}" ext="$PKI/$1.ext"
  [ -f "$PKI/$name.crt" ] && return
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  local subj="/CN=$cn"; [ -n "$org" ] && subj="/O=$org$subj"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"; else echo "extendedKeyUsage=clientAuth"; fi
  } > "$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

make_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "creating the cluster CA and certificates in $PKI"
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=splice-local-cluster-ca" -days 365 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert kubelet-client "system:node:$NODE_NAME" system:nodes
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$NODE_IP"
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kube-proxy system:kube-proxy ""
  if [ ! -f "$PKI/sa.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  chmod 600 "$PKI"/*.key
}

# put FILE: write stdin to FILE unless FILE already holds exactly that. Components that watch
# their configuration (kube-proxy exits when its file is written) are left alone by a second up.
put() {
  local tmp; tmp="$(mktemp "$1.XXXXXX")"
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else chmod 600 "$tmp"; mv "$tmp" "$1"; fi
}

kubeconfig() {
  local file="$1" user="$2"
  put "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: splice-local
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$user.crt
    client-key: $PKI/$user.key
contexts:
- name: splice-local
  context: {cluster: splice-local, user: $user}
current-context: splice-local
EOF
}

write_configs() {
  mkdir -p "$ETC/cni/net.d" "$RUN" "$STATE/cni" "$STATE/kubelet" "$STATE/kubelet-plugins"
  kubeconfig "$KUBECONFIG_ADMIN" admin
  kubeconfig "$ETC/controller-manager.kubeconfig" controller-manager
  kubeconfig "$ETC/scheduler.kubeconfig" scheduler
  kubeconfig "$ETC/kubelet.kubeconfig" kubelet-client
  kubeconfig "$ETC/kube-proxy.kubeconfig" kube-proxy

  put "$ETC/cni/net.d/10-splice.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "splice",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "$POD_RANGE_START", "rangeEnd": "$POD_RANGE_END", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  put "$ETC/containerd.toml" <<EOF
# containerd for the local cluster: its own root, state and socket; nothing is pulled.
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
oom_score = 0
# The "opt" plugin would create /opt/containerd; the other snapshotters are not used.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: never lower a container's OOM score below containerd's.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ETC/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF

  put "$ETC/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
volumePluginDir: $STATE/kubelet-plugins
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
# Every image is built here and cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
EOF

  put "$ETC/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $ETC/kube-proxy.kubeconfig
# NodePorts only on the bridge address, never on an outside interface.
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
# Leave the host's conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# The bridge carries the node IP before anything binds to it; the CNI bridge plugin attaches
# the pods' veths to it.
network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating the host-only bridge $BRIDGE with $NODE_IP (pods: $POD_CIDR, services: $SERVICE_CIDR)"
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" > "$STATE/bridge-created"
  fi
  local prefix="${POD_CIDR#*/}"
  ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/$prefix" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pods reach each other and Services through the host: forwarding on (restored by down).
  sysctl -qw net.ipv4.ip_forward=1
  # Nothing from or to the pod range crosses an interface other than the bridge. mangle/FORWARD
  # runs before kube-proxy's filter rules, so none of its ACCEPTs can bypass this.
  iptables -t mangle -N SPLICE-ISOLATION 2>/dev/null || true
  iptables -t mangle -C FORWARD -j SPLICE-ISOLATION 2>/dev/null || iptables -t mangle -I FORWARD 1 -j SPLICE-ISOLATION
  iptables -t mangle -F SPLICE-ISOLATION
  iptables -t mangle -A SPLICE-ISOLATION -s "$POD_CIDR" ! -o "$BRIDGE" -m comment --comment "splice local cluster: pod traffic stays on this machine" -j DROP
  iptables -t mangle -A SPLICE-ISOLATION -d "$POD_CIDR" ! -i "$BRIDGE" -m comment --comment "splice local cluster: nothing from outside reaches pods" -j DROP
}

# --- components --------------------------------------------------------------------------------

start_etcd() {
  mkdir -p "$STATE/etcd"; chmod 700 "$STATE/etcd"
  start etcd "$BIN/etcd" --name splice --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "splice=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --quota-backend-bytes 1073741824 --log-level warn
}

start_apiserver() {
  mkdir -p "$STATE/apiserver"
  start kube-apiserver "$BIN/kube-apiserver" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --cert-dir "$STATE/apiserver" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --enable-priority-and-fairness=false --allow-privileged=true --profiling=false \
    --event-ttl 1h
}

start_controller_manager() {
  mkdir -p "$STATE/controller-manager"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$ETC/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$ETC/controller-manager.kubeconfig" --authorization-kubeconfig "$ETC/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --cert-dir "$STATE/controller-manager" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false --profiling=false --terminated-pod-gc-threshold 50 \
    --flex-volume-plugin-dir "$STATE/kubelet-plugins"
}

start_scheduler() {
  mkdir -p "$STATE/scheduler"
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$ETC/scheduler.kubeconfig" \
    --authentication-kubeconfig "$ETC/scheduler.kubeconfig" --authorization-kubeconfig "$ETC/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --cert-dir "$STATE/scheduler" --leader-elect=false --profiling=false
}

start_containerd() {
  mkdir -p "$RUN/containerd" "$STATE/containerd"
  start containerd /usr/bin/containerd --config "$ETC/containerd.toml"
  wait_for "containerd" 30 ctr --address "$CONTAINERD_SOCK" version || die "containerd did not start: see $LOGS/containerd.log"
}

start_kubelet() {
  start kubelet "$BIN/kubelet" --config "$ETC/kubelet.yaml" --kubeconfig "$ETC/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
}

start_kube_proxy() {
  start kube-proxy "$BIN/kube-proxy" --config "$ETC/kube-proxy.yaml"
}

apiserver_ready() { "${KUBECTL[@]}" get --raw /readyz; }
node_ready() { [ "$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }
default_sa() { "${KUBECTL[@]}" -n default get serviceaccount default; }

# import_images loads every image tarball of $IMAGES_DIR that changed since it was last loaded
# into this cluster's containerd.
import_images() {
  local t n=0 same=0 stamp
  mkdir -p "$STATE/imported"
  shopt -s nullglob
  for t in "$IMAGES_DIR"/*.tar; do
    stamp="$STATE/imported/$(basename "$t").stamp"
    if [ "$(stat -c '%s %Y' "$t")" = "$(cat "$stamp" 2>/dev/null)" ]; then same=$((same + 1)); continue; fi
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null || die "importing $t failed"
    stat -c '%s %Y' "$t" > "$stamp"
    n=$((n + 1))
  done
  shopt -u nullglob
  log "imported $n image(s) from $IMAGES_DIR ($same unchanged)"
}

ensure_pause_image() {
  if [ ! -f "$IMAGES_DIR/pause.tar" ]; then
    log "building the pause image (hack/images)"
    (cd "$repo" && go run ./hack/images --out "$IMAGES_DIR" pause)
  fi
}

up() {
  require_root
  local start_all=$SECONDS
  install_packages
  build_binaries
  ensure_pause_image
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  record_host
  make_pki
  write_configs
  network_up
  start_etcd
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" || die "etcd did not become healthy: see $LOGS/etcd.log"
  start_apiserver
  wait_for kube-apiserver 90 apiserver_ready || die "kube-apiserver did not become ready: see $LOGS/kube-apiserver.log"
  log "kube-apiserver ready at https://$NODE_IP:$APISERVER_PORT"
  start_controller_manager
  start_scheduler
  start_containerd
  import_images
  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME to be Ready" 120 node_ready || die "node $NODE_NAME is not Ready: see $LOGS/kubelet.log"
  wait_for "the default ServiceAccount" 60 default_sa || die "no default ServiceAccount: see $LOGS/kube-controller-manager.log"
  log "cluster ready in $((SECONDS - start_all))s: node $NODE_NAME ($NODE_IP), kubeconfig $KUBECONFIG_ADMIN"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN" >&2
}

# --- down --------------------------------------------------------------------------------------

# Processes of the cluster's containers, found by cgroup (kubelet's kubepods hierarchy) and the
# shims serving this cluster's containerd.
container_pids() {
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  local p
  for p in /proc/[0-9]*; do
    # A process may exit between the glob and the read: the redirection's error is silenced too.
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.*-address $CONTAINERD_SOCK" && echo "${p#/proc/}"
  done
  true
}

stop_containers() {
  if alive containerd && [ -S "$CONTAINERD_SOCK" ]; then
    local ids
    ids="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null || true)"
    if [ -n "$ids" ]; then
      log "stopping $(echo "$ids" | wc -l) container task(s)"
      local id
      for id in $ids; do ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
      sleep 1
      for id in $ids; do ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true; done
    fi
  fi
  local pids tries=0
  while pids="$(container_pids | sort -u)"; [ -n "$pids" ] && ((tries < 20)); do
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    tries=$((tries + 1)); sleep 0.25
  done
  [ -z "$pids" ] || warn "processes still in the cluster's cgroups: $pids"
}

# Unmount every mount that appeared since up under the cluster's paths, deepest first.
unmount_all() {
  local roots=("$STATE" /run/containerd /var/lib/kubelet /run/netns /var/run/netns /var/lib/containerd)
  local pass m
  for pass in 1 2 3; do
    local mps=()
    while read -r m; do
      local r; for r in "${roots[@]}"; do
        case "$m" in "$r"|"$r"/*) grep -qxF "$m" <(awk '{print $1}' "$BEFORE/mounts" 2>/dev/null) || mps+=("$m") ;; esac
      done
    done < <(awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' | sort -r -u)
    [ "${#mps[@]}" -eq 0 ] && break
    for m in "${mps[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
}

restore_network() {
  # Links that appeared since up: the bridge and any veth left behind.
  local l
  while read -r l; do
    grep -qxF "$l" "$BEFORE/links" 2>/dev/null && continue
    case "$l" in "$BRIDGE"|veth*|cni0) ip link delete "$l" 2>/dev/null && log "deleted link $l" || true ;; esac
  done < <(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//')

  # nftables (iptables-nft writes there): drop tables that did not exist, put back those that did.
  if command -v nft >/dev/null; then
    local fam name
    while read -r _ fam name; do
      [ -n "$name" ] || continue
      if ! grep -qxF "table $fam $name" "$BEFORE/nft-tables" 2>/dev/null; then
        nft delete table "$fam" "$name" 2>/dev/null || warn "could not delete nftables table $fam $name"
      fi
    done < <(nft list tables 2>/dev/null)
    if [ -s "$BEFORE/nft" ] && ! diff -q <(nft list ruleset 2>/dev/null) "$BEFORE/nft" >/dev/null; then
      # A table that existed before was changed: put each one back as it was.
      while read -r _ fam name; do
        [ -n "$name" ] || continue
        local was; was="$(awk -v h="table $fam $name {" '$0==h{p=1} p{print} p&&/^}/{exit}' "$BEFORE/nft")"
        if [ "$was" != "$(nft list table "$fam" "$name" 2>/dev/null)" ]; then
          nft delete table "$fam" "$name" && nft -f <(echo "$was") || warn "could not restore nftables table $fam $name"
        fi
      done < "$BEFORE/nft-tables"
    fi
  fi
  # iptables-legacy, if anything used it: restore the recorded tables; flush the others.
  local tool
  for tool in iptables-legacy ip6tables-legacy; do
    command -v "$tool-save" >/dev/null || continue
    local now; now="$("$tool-save" 2>/dev/null | normalize_save)"
    [ "$now" = "$(cat "$BEFORE/$tool-save" 2>/dev/null)" ] && continue
    local t
    for t in $(echo "$now" | sed -n 's/^\*//p'); do
      if grep -qx "\*$t" "$BEFORE/$tool-save" 2>/dev/null; then
        awk -v t="*$t" '$0==t{p=1} p{print} p&&/^COMMIT/{exit}' "$BEFORE/$tool-save" | "$tool-restore" -T "$t" 2>/dev/null || warn "could not restore $tool table $t"
      else
        "$tool" -t "$t" -F 2>/dev/null || true; "$tool" -t "$t" -X 2>/dev/null || true
      fi
    done
  done
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
}

restore_sysctls() {
  [ -f "$BEFORE/sysctl-restore" ] || return 0
  local k v
  while IFS=$'\t' read -r k v; do
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" 2>/dev/null || warn "could not restore sysctl $k=$v"
  done < "$BEFORE/sysctl-restore"
}

restore_cgroups() {
  local d
  # Deepest first; a cgroup directory is removed with rmdir (never rm -r).
  while read -r d; do
    grep -qxF "$d" "$BEFORE/cgroups" 2>/dev/null || rmdir "$d" 2>/dev/null || true
  done < <(find /sys/fs/cgroup -mindepth 1 -type d \( -name kubepods -o -path '*/kubepods/*' -o -path '*/kubepods.slice*' \) 2>/dev/null | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
}

restore_paths() {
  local p
  if [ ! -f "$BEFORE/paths" ]; then warn "no record of which host paths existed before up: removing none of ${HOST_PATHS[*]}"; return; fi
  for p in "${HOST_PATHS[@]}"; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    grep -qxF "$p" "$BEFORE/paths" 2>/dev/null && continue
    # Never follow a mount out of the path being removed.
    if awk '{print $5}' /proc/self/mountinfo | grep -q "^$p/"; then warn "$p still has mounts; left in place"; continue; fi
    rm -rf --one-file-system "$p" && log "removed $p"
  done
}

# compare: every difference between the host now and the record.
compare_host() {
  local after="$STATE/host-after" f diffs=0
  rm -rf "$after"; snapshot "$after"
  # cgroups: only new ones count (others, such as the sandbox's per-job cgroups, come and go).
  comm -13 "$BEFORE/cgroups" "$after/cgroups" > "$after/cgroups-new"
  if [ -s "$after/cgroups-new" ]; then
    diffs=$((diffs + 1)); warn "cgroups created since up and still there:"; sed 's/^/    /' "$after/cgroups-new" | head -20 >&2
  fi
  # New entries in /, /etc, /var/lib, /var/log, /run and /opt that are not the cluster's (those
  # are in HOST_PATHS) were made by something else on this machine while the cluster ran (a
  # package installed meanwhile, say): reported, left alone, not counted.
  if ! diff -q "$BEFORE/toplevel" "$after/toplevel" >/dev/null 2>&1; then
    log "note: entries in /, /etc, /var/lib, /var/log, /run or /opt changed while the cluster ran, not by it (left alone):"
    diff "$BEFORE/toplevel" "$after/toplevel" | grep '^[<>]' | sort -u | sed 's/^/    /' | head -20 >&2 || true
  fi
  for f in sysctl mounts links addrs routes nft nft-tables iptables-legacy-save ip6tables-legacy-save paths; do
    [ -f "$BEFORE/$f" ] || [ -f "$after/$f" ] || continue
    if ! diff -q "$BEFORE/$f" "$after/$f" >/dev/null 2>&1; then
      diffs=$((diffs + 1))
      warn "the host's $f differ from before up:"
      diff "$BEFORE/$f" "$after/$f" | sed 's/^/    /' | head -40 >&2 || true
    fi
  done
  local procs=""
  local p; for p in "$PIDS"/*.pid; do [ -f "$p" ] && running "$(cat "$p")" && procs+=" $(basename "$p" .pid)"; done
  [ -z "$procs" ] || { diffs=$((diffs + 1)); warn "still running:$procs"; }
  [ -z "$(container_pids)" ] || { diffs=$((diffs + 1)); warn "container processes still running: $(container_pids | tr '\n' ' ')"; }
  if [ "$diffs" -eq 0 ]; then
    log "host check: processes, mounts, links, addresses, routes, nftables/iptables, sysctls, cgroups and directories are as before up"
  fi
  return "$diffs"
}

down() {
  require_root
  if [ ! -d "$STATE" ]; then log "no cluster state in $STATE: nothing to do"; return 0; fi
  local start_all=$SECONDS
  [ -f "$BEFORE/complete" ] || warn "no record of the host from up in $BEFORE; removing what this cluster is known to create"
  stop kube-proxy
  stop kube-scheduler
  stop kube-controller-manager
  stop kubelet 15
  stop_containers
  stop containerd
  stop_containers
  stop kube-apiserver 15
  stop etcd
  unmount_all
  restore_network
  restore_sysctls
  restore_cgroups
  restore_paths
  local rc=0
  compare_host || rc=$?
  # Keep the last run's logs and the host comparison, then remove every trace of the cluster.
  rm -rf "$LOGKEEP"; mkdir -p "$LOGKEEP"
  cp -a "$LOGS"/. "$LOGKEEP"/ 2>/dev/null || true
  [ -d "$STATE/host-after" ] && cp -a "$STATE/host-after" "$LOGKEEP/host-after" && cp -a "$BEFORE" "$LOGKEEP/host-before"
  if awk '{print $5}' /proc/self/mountinfo | grep -q "^$STATE"; then
    warn "mounts remain under $STATE; it is left in place"; rc=1
  else
    rm -rf --one-file-system "$STATE"
  fi
  log "cluster down in $((SECONDS - start_all))s (logs kept in $LOGKEEP)"
  return "$rc"
}

# --- status ------------------------------------------------------------------------------------

status() {
  if [ ! -d "$STATE" ]; then echo "no local cluster (state: $STATE)"; return 1; fi
  local c rc=0
  printf '%-24s %-8s %s\n' COMPONENT PID STATE
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if alive "$c"; then printf '%-24s %-8s %s\n' "$c" "$(pid_of "$c")" running
    else printf '%-24s %-8s %s\n' "$c" - stopped; rc=1; fi
  done
  echo
  echo "kubeconfig: $KUBECONFIG_ADMIN   (eval \"\$(hack/cluster/cluster.sh env)\")"
  if apiserver_ready >/dev/null 2>&1; then
    echo; "${KUBECTL[@]}" get nodes -o wide || rc=1
    echo; "${KUBECTL[@]}" get pods -A -o wide || rc=1
  else
    echo "kube-apiserver is not ready"; rc=1
  fi
  if alive containerd; then
    echo; echo "images in containerd:"; ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -v '^sha256:' | sed 's/^/  /'
  fi
  return "$rc"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_ADMIN" ;;
  import-images) alive containerd || die "the local cluster is not running"; import_images ;;
  running) alive containerd && alive kube-apiserver ;;
  *) echo "usage: $0 up|down|status|env|import-images|running" >&2; exit 2 ;;
esac
