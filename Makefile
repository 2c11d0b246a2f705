# Hearth. The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /usr/bin/env bash
export CGO_ENABLED := 0
K8S_VERSION ?= v1.37.2
CONTROLLER_GEN_VERSION ?= v0.23.0
TOOLS := $(abspath bin/tools)
CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
## The image `make image` builds: the chart's default (repository hearth, tag = appVersion)
## and the samples' spec.image name it. A release sets VERSION (and the chart's appVersion)
## to its tag, e.g. `make image VERSION=v0.2.0` (CHANGELOG.md, docs/upgrading.md).
VERSION ?= dev
IMG ?= hearth:$(VERSION)
STATICCHECK_VERSION ?= v0.8.2
# Cached outside the work tree and reused by every clone.
STATICCHECK := $(HOME)/.cache/hearth/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.PHONY: all build test test-go test-chart test-gitops demo k8s-bins versitygw generate manifests verify-generated vet staticcheck fmt image test-image monitoring test-monitoring bench fuzz

all: build

## build: bin/hearth; `bin/hearth version` prints VERSION (dev: the source's release, -dev) and the commit.
build:
	go build -ldflags "-X main.version=$(VERSION) -X main.revision=$$(git rev-parse HEAD 2>/dev/null)" -o bin/hearth ./cmd/hearth

## test: everything CI runs (builds the Kubernetes test binaries on first use).
test: k8s-bins versitygw verify-generated vet staticcheck test-go

# Packages that start control planes or clusters of processes run one at a
# time: on 2 cores two API servers starting together can miss envtest's start timeout.
HEAVY_PKGS := ./controllers/... ./test/...
test-go: test-chart test-image test-monitoring test-gitops
	go test -count=1 -timeout 30m $$(go list ./... | grep -v -e /controllers -e /test/)
	KUBEBUILDER_ASSETS=$(abspath bin/k8s/$(K8S_VERSION)) go test -p 1 -count=1 -timeout 30m $(HEAVY_PKGS)

## test-chart: lint and render charts/hearth with Helm's Go library (its own module, so
## Helm's dependencies stay out of go.mod).
test-chart:
	cd charts/hearth/test && go vet ./... && go test -count=1 ./...

## test-gitops: syncs the chart and the samples as Argo CD does against envtest with the
## operator reconciling: no drift (gitops-engine's server-side diff), the Lua health through
## a rollout, nothing Argo CD would prune (its own module: gitops-engine's dependencies).
test-gitops: k8s-bins
	cd test/gitops && go vet ./... && KUBEBUILDER_ASSETS=$(abspath bin/k8s/$(K8S_VERSION)) go test -count=1 -timeout 15m ./...

## test-image: builds the image twice (same digest), validates it, and runs the binary from
## its layer (hack/image is its own module, so go-containerregistry stays out of go.mod).
test-image:
	cd hack/image && go vet ./... && go test -count=1 ./...

## test-monitoring: the alerting rules and dashboards parse with Prometheus's own parsers,
## every alert has a runbook, and docs/monitoring/metrics-used.txt lists what they use
## (test/monitoring checks that list against a real ingester's and operator's /metrics).
test-monitoring:
	cd hack/monitoring && go vet ./... && go test -count=1 ./...

## monitoring: after editing docs/monitoring (rules, dashboards), refresh metrics-used.txt
## and the chart's copies.
monitoring:
	cd hack/monitoring && go test -count=1 -run TestMetricsUsedUpToDate . -update
	@mkdir -p charts/hearth/files/dashboards
	cp docs/monitoring/alerts.yaml charts/hearth/files/alerts.yaml
	cp docs/monitoring/dashboards/*.json charts/hearth/files/dashboards/

vet:
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

## staticcheck: the pinned staticcheck on the module and the tool modules (chart test, image, monitoring, gitops).
staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...
	for m in charts/hearth/test hack/image hack/monitoring test/gitops; do (cd $$m && $(STATICCHECK) ./...) || exit 1; done

$(STATICCHECK):
	GOBIN=$(dir $(STATICCHECK)) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

k8s-bins:
	K8S_VERSION=$(K8S_VERSION) ./hack/build-k8s.sh >/dev/null

## versitygw: the S3 server the object storage tests run (internal/s3test), built once and cached.
versitygw:
	./hack/build-versitygw.sh >/dev/null

## demo: the operator running the sample 3-replica Ingester on a local control plane (test/e2e platform), a real workload profiled and pushed, a top-10 query; Ctrl-C stops it.
demo:
	./hack/demo.sh

$(CONTROLLER_GEN):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $(CONTROLLER_GEN)

generate: $(CONTROLLER_GEN)
	@if [ -d api ]; then $(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...; fi

manifests: $(CONTROLLER_GEN)
	@if [ -d api ]; then $(CONTROLLER_GEN) rbac:roleName=hearth-operator crd paths=./api/... paths=./controllers/... output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac; fi
	@# The chart ships copies: the CRD, the Argo CD health check (its NOTES print it), the alerts and dashboards.
	@if [ -d charts/hearth ]; then cp config/crd/bases/hearth.dev_ingesters.yaml charts/hearth/crds/ && cp docs/argocd-health.lua charts/hearth/files/ && cp docs/monitoring/alerts.yaml charts/hearth/files/alerts.yaml && cp docs/monitoring/dashboards/*.json charts/hearth/files/dashboards/; fi

## verify-generated: fail when the checked-in generated files are stale.
verify-generated: generate manifests
	@git diff --exit-code -- api config charts || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }

bench:
	go test -run '^$$' -bench . -benchmem ./ingester/...

## image: bin/hearth-image.tar, the container image built without Docker or a registry
## (`docker load -i bin/hearth-image.tar`, or `crane push bin/hearth-image.tar <your-registry>/hearth:<tag>`).
image:
	IMG=$(IMG) VERSION=$(VERSION) ./hack/build-image.sh
