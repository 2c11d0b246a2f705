// Package gitops syncs the chart and the samples the way Argo CD does, against
// a real kube-apiserver with the operator reconciling, and checks what Argo CD
// would show: no drift, the Ingester's health through a rollout, nothing it
// would prune. Everything is in its tests; this file gives the package a
// non-test file so that go vet and staticcheck see it. It is its own module
// so that gitops-engine's dependencies stay out of the project's go.mod.
package gitops
