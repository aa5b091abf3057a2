# Splice — build, generate, test and run.
#
# Everything a target needs is provisioned by the target itself into bin/ (controller-gen, the
# control-plane binaries), so a fresh clone needs only Go and gcc.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
K8S_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
K8S_BIN ?= $(LOCALBIN)/k8s
# Packages controller-gen reads for the manager: the API and the packages whose RBAC and webhook
# markers describe the manager. (The agent's much smaller Role is kept apart, under config/rbac.)
GEN_PATHS := paths=./api/... paths=./controllers/... paths=./webhooks/...

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

.PHONY: envtest-assets
envtest-assets: ## Provide kube-apiserver, etcd and kubectl in bin/k8s (download, else build from the Go module proxy; cached).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/k8s-binaries.sh $(K8S_BIN) etcd kube-apiserver kubectl

.PHONY: test
test: verify-generated vet envtest-assets ## The full test suite: generated files, vet, unit and envtest suites, real plugins.
	go test ./... -count=1 -timeout 30m

##@ Build and run

.PHONY: build
build: ## Build every binary into bin/.
	go build -o $(LOCALBIN)/ ./cmd/...

.PHONY: run
run: envtest-assets ## Local control plane + the real manager: real plugins roll out under each policy to pods with simulated agents.
	K8S_VERSION=$(K8S_VERSION) hack/k8s-binaries.sh $(K8S_BIN) kube-controller-manager
	go run ./cmd/splice-local $(RUN_ARGS)

.PHONY: bench
bench: ## Hot swap (through the agent) vs re-exec hand-off vs cold restart under load, side by side (~1 min).
	go run ./cmd/splice-bench

.PHONY: fleetbench
fleetbench: envtest-assets ## Rollout engine on fleets of 50, 200 and 1000 simulated pods per policy: time, API writes, manager memory (~3 min).
	go run ./cmd/splice-fleetbench

$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	@echo "installing controller-gen $(CONTROLLER_TOOLS_VERSION) into $(LOCALBIN)"
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)
