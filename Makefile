# Splice — build, generate, test and run.
#
# Everything a target needs is provisioned by the target itself into bin/ (controller-gen,
# staticcheck, the control-plane binaries), so a fresh clone needs only Go and gcc.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
K8S_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(LOCALBIN)/staticcheck-$(STATICCHECK_VERSION)
K8S_BIN ?= $(LOCALBIN)/k8s
# Packages controller-gen reads for the manager: the API and the packages whose RBAC and webhook
# markers describe the manager. (The agent's much smaller Role is kept apart, under config/rbac.)
GEN_PATHS := paths=./api/... paths=./controllers/... paths=./webhooks/... paths=./internal/manager/...

export KUBEBUILDER_ASSETS := $(K8S_BIN)

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD, RBAC and webhook configurations under config/ from kubebuilder markers.
	$(CONTROLLER_GEN) crd rbac:roleName=splice-manager webhook $(GEN_PATHS) \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail if generated files are stale (regenerates in a copy; the tree is untouched).
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet, and fail on unformatted files.
	@unformatted=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed (run make fmt):"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	cd host && go vet ./...
	cd examples/grpc-quote && go vet ./...
	go vet -tags e2e ./test/e2e/

.PHONY: lint
lint: $(STATICCHECK) ## staticcheck (pinned), and no function over the length and complexity bounds of hack/funclint.
	@echo "staticcheck $(STATICCHECK_VERSION) ./... (a few minutes on a cold cache)"
	$(STATICCHECK) ./...
	cd host && $(STATICCHECK) ./...
	cd examples/grpc-quote && $(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e ./test/e2e/
	go run ./hack/funclint

.PHONY: envtest-assets
envtest-assets: ## Provide kube-apiserver, etcd and kubectl in bin/k8s (download, else build from the Go module proxy; cached).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/k8s-binaries.sh $(K8S_BIN) etcd kube-apiserver kubectl

.PHONY: test
test: test-unit test-e2e ## What CI runs: test-unit, then test-e2e (root; a cold machine builds Kubernetes and helm once, ~25 min).

.PHONY: test-unit
test-unit: verify-generated vet lint envtest-assets ## Generated files, vet, lint, unit and envtest suites, real plugins and hosts, then every fuzz target for a bounded time (no root, no cluster).
	go test ./... -count=1 -timeout 30m
	cd host && go test ./... -count=1 -timeout 10m
	$(MAKE) --no-print-directory test-examples
	$(MAKE) --no-print-directory fuzz

.PHONY: test-examples
test-examples: ## The example services in their own modules (examples/grpc-quote: real host and plugins, a swap and a re-exec under gRPC load).
	cd examples/grpc-quote && go test ./... -count=1

# Fuzzing of every parser that reads another party's input (the *_fuzz_test.go files): each target
# for its time, as package:target:time (the go command takes one -fuzz target per run). test-unit
# runs them after the tests; their seed corpora, with every input that ever failed, also run in
# go test ./... as plain tests.
# The api/v1alpha1 targets get longer: their test binary links client-go and envtest, whose
# coverage counters make each input slower.
FUZZ_TARGETS ?= \
	api/v1alpha1:FuzzReportAnnotation:12s api/v1alpha1:FuzzDesiredStateAnnotations:12s \
	host/control:FuzzDecodeRequest:5s host/control:FuzzDecodeReaders:5s host/control:FuzzClientResponses:5s \
	artifact:FuzzConfigBlob:5s artifact:FuzzManifest:5s host/preflight:FuzzReadFacts:5s \
	builder:FuzzParseResult:5s builder:FuzzParseFailure:5s builder:FuzzNewFailure:5s

.PHONY: fuzz
fuzz: ## Fuzz every parser of another party's input for a few seconds each (11 targets, about 90 s on 2 cores).
	@out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; time=$${rest#*:}; \
		dir=.; rel=$$pkg; case $$pkg in host|host/*) dir=host; rel=$${pkg#host}; rel=$${rel#/};; esac; \
		rc=0; (cd $$dir && go test ./$$rel -run '^$$' -fuzz "^$$name\$$" -fuzztime $$time -fuzzminimizetime 0) >"$$out" 2>&1 || rc=$$?; \
		execs=$$(grep -o 'execs: [0-9]*' "$$out" | tail -1 | cut -d' ' -f2 || true); \
		if [ $$rc = 0 ]; then \
			echo "fuzz $$pkg $$name: ok, $${execs:-0} inputs in $$time"; \
		elif grep -q 'context deadline exceeded' "$$out" && ! grep -q 'Failing input written' "$$out"; then \
			echo "fuzz $$pkg $$name: ok, $${execs:-0} inputs in $$time (no failing input: go1.26 misreports the end of -fuzztime, golang/go#75804)"; \
		else \
			cat "$$out"; \
			echo "fuzz $$pkg $$name: FAILED: keep the input written under $$pkg/testdata/fuzz/$$name/ as a seed, and fix the parser"; \
			exit 1; \
		fi; \
	done

##@ Build and run

.PHONY: build
build: ## Build every binary into bin/.
	go build -o $(LOCALBIN)/ ./cmd/...

.PHONY: run
run: envtest-assets ## Local control plane + the real manager: real plugins roll out under each policy to pods with simulated agents.
	K8S_VERSION=$(K8S_VERSION) hack/k8s-binaries.sh $(K8S_BIN) kube-controller-manager
	go run ./cmd/splice-local $(RUN_ARGS)

.PHONY: bench
bench: bench-calls ## The host's call path (bench-calls), then hot swap (through the agent) vs re-exec hand-off vs cold restart under load, side by side (~2 min).
	go run ./cmd/splice-bench

# BENCH_COUNT runs of BENCH_TIME each per benchmark; the table shows their median.
BENCH_COUNT ?= 5
BENCH_TIME ?= 300ms

.PHONY: bench-calls
bench-calls: ## A call through host.Slot (plain, with its version, with a 30% canary) vs a direct interface call, serial and parallel at -cpu 1,2,4, in one table (~1 min).
	@echo "load average before: $$(cat /proc/loadavg) ($$(nproc) CPUs; parallel columns above that many are oversubscribed)"
	cd host && go test . -run '^$$' -bench '^Benchmark(Direct|Slot|Counters)' -cpu 1,2,4 -count $(BENCH_COUNT) -benchtime $(BENCH_TIME) | awk "$$BENCH_TABLE_AWK"
	@echo "load average after:  $$(cat /proc/loadavg)"

# BENCH_TABLE_AWK turns `go test -bench -cpu ...` output into one row per benchmark and one
# column per -cpu value (median ns/op), then the same columns less the Direct row of the same
# variant (serial, parallel): what the slot adds to a call. Other lines go to stderr.
define BENCH_TABLE_AWK
/^Benchmark/ {
	name = $$1; cpu = 1
	if (match(name, /-[0-9]+$$/)) { cpu = substr(name, RSTART + 1); name = substr(name, 1, RSTART - 1) }
	sub(/^Benchmark/, "", name)
	for (i = 2; i < NF; i++) if ($$(i + 1) == "ns/op") v = $$i
	if (!(name in seen)) { seen[name] = 1; rows[++nrows] = name }
	if (!(cpu in cseen)) { cseen[cpu] = 1; cpus[++ncpus] = cpu }
	k = name SUBSEP cpu; runs[k]++; val[k, runs[k]] = v + 0
	next
}
/^(goos|goarch|pkg|PASS|ok)/ { next }
/^cpu: / { model = substr($$0, 6); next }
{ print > "/dev/stderr" }
function median(k,   m, i, j, t, a) {
	m = runs[k]; if (m == 0) return -1
	for (i = 1; i <= m; i++) a[i] = val[k, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function cell(x) { return x < 0 ? sprintf("%9s", "-") : sprintf("%9.2f", x) }
END {
	printf "%s\nmedian ns/op of each benchmark's runs, by -cpu; then minus Direct/<same variant>\n", model
	printf "%-28s", "benchmark"
	for (c = 1; c <= ncpus; c++) printf "%9s", "cpu=" cpus[c]
	printf "  |"
	for (c = 1; c <= ncpus; c++) printf "%9s", "+cpu=" cpus[c]
	printf "\n"
	for (r = 1; r <= nrows; r++) {
		name = rows[r]; variant = name; sub(/^[^\/]*\//, "", variant)
		printf "%-28s", name
		for (c = 1; c <= ncpus; c++) printf "%s", cell(median(name SUBSEP cpus[c]))
		printf "  |"
		for (c = 1; c <= ncpus; c++) {
			x = median(name SUBSEP cpus[c]); d = median("Direct/" variant SUBSEP cpus[c])
			printf "%s", (x < 0 || d < 0 || name ~ /^(Direct|Counters)/) ? sprintf("%9s", "") : cell(x - d)
		}
		printf "\n"
	}
}
endef
export BENCH_TABLE_AWK

.PHONY: fleetbench
fleetbench: envtest-assets ## Rollout engine on fleets of 50, 200 and 1000 simulated pods per policy: time, API writes, manager memory (~3 min).
	go run ./cmd/splice-fleetbench

$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	@echo "installing controller-gen $(CONTROLLER_TOOLS_VERSION) into $(LOCALBIN)"
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

$(STATICCHECK):
	@mkdir -p $(LOCALBIN)
	@echo "installing staticcheck $(STATICCHECK_VERSION) into $(LOCALBIN)"
	GOBIN=$(LOCALBIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(LOCALBIN)/staticcheck $(STATICCHECK)

##@ Local cluster, images, chart and end-to-end tests

# A real single-node cluster on this machine (hack/cluster/cluster.sh: root, Debian packages,
# Kubernetes built from the Go module proxy into bin/k8s); its state and kubeconfig live here.
CLUSTER_DIR ?= $(CURDIR)/.local/cluster
IMAGES_DIR ?= $(CURDIR)/.local/images
# Images `make images` builds (all by default): pause manager agent builder greeter greeter-variant greeter-api2
# e2e-services golang.
# The demo's: it rolls out prebuilt artifacts, so no build Job image (golang) and no variant.
DEMO_IMAGES ?= pause manager agent builder greeter e2e-services
IMAGES ?=
# GOPROXY baked into the golang image (none: the chart's build.env gives build Jobs theirs).
GOLANG_IMAGE_GOPROXY ?=
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
CLUSTER_ENV = SPLICE_CLUSTER_DIR=$(CLUSTER_DIR) SPLICE_IMAGES_DIR=$(IMAGES_DIR) K8S_BIN=$(K8S_BIN) \
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION)

.PHONY: cluster-up
cluster-up: ## Start the local cluster (as root; ~10 min once to build the Kubernetes binaries, ~15 s after). Prints the KUBECONFIG.
	$(CLUSTER_ENV) hack/cluster/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and put the host back exactly as cluster-up found it (checked, differences printed).
	$(CLUSTER_ENV) hack/cluster/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Show the local cluster's processes, node, pods and images.
	$(CLUSTER_ENV) hack/cluster/cluster.sh status

.PHONY: images
images: ## Build the images (IMAGES="pause manager agent ..." or all) into .local/images and load them into the local cluster if it runs.
	go run ./hack/images -out $(IMAGES_DIR) -goproxy=$(GOLANG_IMAGE_GOPROXY) $(IMAGES)
	@if $(CLUSTER_ENV) hack/cluster/cluster.sh running; then $(CLUSTER_ENV) hack/cluster/cluster.sh import-images; \
	else echo "the local cluster is not running: make cluster-up imports the images"; fi

.PHONY: helm
helm: $(HELM) ## Provide the real helm in bin/ (built from the Go module proxy).

$(HELM):
	HELM_VERSION=$(HELM_VERSION) hack/helm.sh $(LOCALBIN)

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint and helm template the chart, and check it against config/ (CRD, RBAC, webhooks).
	$(HELM) lint --strict charts/splice
	$(HELM) lint --strict charts/splice --set webhook.certificates.mode=cert-manager \
		--set 'agent.rbacBindings[0].namespace=demo,agent.rbacBindings[0].serviceAccount=greeter'
	$(HELM) template splice charts/splice --namespace splice-system >/dev/null
	HELM=$(HELM) go test ./test/chart/ -count=1

.PHONY: demo
demo: $(HELM) ## The README's first command: a local cluster (root), the chart, the example service, two rollouts under load, live.
	@if [ "$$(id -u)" != 0 ]; then echo "make demo runs a real cluster on this machine and needs root (make run shows the rollouts on a local control plane, without root)"; exit 1; fi
	@$(CLUSTER_ENV) hack/cluster/cluster.sh running || $(MAKE) cluster-up
	$(MAKE) images IMAGES="$(DEMO_IMAGES)"
	go build -o $(LOCALBIN)/kubectl-splice ./cmd/kubectl-splice
	go run ./cmd/splice-demo -kubeconfig $(CLUSTER_DIR)/kubeconfig -helm $(HELM) -kubectl-splice $(LOCALBIN)/kubectl-splice

.PHONY: test-e2e
test-e2e: $(HELM) ## The e2e suite on a local cluster: cluster-up (unless one runs), e2e, then cluster-down whatever happened.
	@if [ "$$(id -u)" != 0 ]; then echo "test-e2e brings up a real cluster on this machine and needs root (make test-unit runs the rest)"; exit 1; fi
	@if $(CLUSTER_ENV) hack/cluster/cluster.sh running; then \
		echo "test-e2e: using the local cluster that runs already, and leaving it running"; \
		$(MAKE) e2e; \
	else \
		status=0; \
		{ $(MAKE) cluster-up && $(MAKE) e2e; } || status=$$?; \
		$(MAKE) cluster-down || { echo "test-e2e: cluster-down failed"; [ $$status != 0 ] || status=1; }; \
		exit $$status; \
	fi

.PHONY: e2e
e2e: $(HELM) ## End-to-end suite on the running local cluster (make cluster-up e2e cluster-down): builds and loads the images, installs the chart.
	@$(CLUSTER_ENV) hack/cluster/cluster.sh running || { echo "the local cluster is not running: make cluster-up first"; exit 1; }
	$(MAKE) images
	HELM=$(HELM) KUBECONFIG=$(CLUSTER_DIR)/kubeconfig SPLICE_CLUSTER_DIR=$(CLUSTER_DIR) \
		go test -tags e2e ./test/e2e/ -count=1 -timeout 30m -v -args -ginkgo.v
