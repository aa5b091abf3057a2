// Command agent is the Splice sidecar (package sidecar): it watches its own pod, pulls the
// plugin artifact the pod's splice.dev/desired-artifact annotation names into the shared
// volume, runs the preflight against the host, asks the host to load and swap it, and writes
// the outcome back to the pod (splice.dev/report and the splice.dev/plugin-ready condition).
//
// Flags (the admission webhook injects these; their names are constants in package sidecar):
//
//	--shared-dir=/var/run/splice      volume shared with the app container
//	--socket=<shared-dir>/splice-host.sock  the host's control socket
//	--http-address=:9440              /readyz, /livez, /metrics; without a host, on the pod IP
//	--pod-name, --pod-namespace       default $POD_NAME, $POD_NAMESPACE (downward API)
//	--pod-ip                          default $POD_IP (downward API status.podIP); when unset or
//	                                  not an IP, a host-less --http-address binds every interface
//	                                  (logged)
//	--insecure-registries=HOST[:PORT],...  registries reached over plain HTTP; every other one
//	                                  gets TLS
//	--trust-policy                    default $SPLICE_TRUST_POLICY: the namespace's trust
//	                                  policy, encoded (the webhook sets it); empty checks no
//	                                  signature
//	--max-plugin-bytes=268435456      largest plugin layer pulled
//	--host-poll-interval=10s          host status reads between pod events
//	--host-timeout=10s --load-timeout=3m --pull-timeout=5m --probe-timeout=5s
//	--wedge-after=5m                  /livez fails once a load has waited this long
//	--report-counters-interval=1m     report writes caused only by call counters
//	--kubeconfig                      only out of cluster
//	--zap-log-level, --zap-devel ...  logging (controller-runtime's zap flags)
//
// Consent to a plugin API minor change is not a flag: it comes from the pod, per target (the
// rollout controller writes splice.dev/allow-minor-api-change from the CompilerVersion's
// spec.plugin.allowMinorAPIChange), and a major change is never swapped in place. The memory
// bound likewise comes from the pod (splice.dev/max-loaded-versions, spec.maxLoadedVersions),
// which the agent hands to the host before it loads.
//
// Registry credentials come from the Docker config in $DOCKER_CONFIG (the webhook mounts the
// Secret the pod's splice.dev/registry-secret annotation names there); the agent cannot read
// Secrets itself.
//
// What it may not touch: it only wires package sidecar to the process (flags, clients, HTTP
// server, signals); every decision lives in sidecar, where it is tested.
package main
