//go:build tools

// Package deps pins the modules the project is built on while packages that
// use them are still being written, so `go mod tidy` keeps them.
package deps

import (
	_ "connectrpc.com/connect"
	_ "github.com/google/pprof/profile"
	_ "github.com/grafana/dskit/ring"
	_ "github.com/grafana/pyroscope-go"
	_ "github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	_ "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	_ "github.com/oklog/ulid/v2"
	_ "github.com/parquet-go/parquet-go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/thanos-io/objstore/providers/filesystem"
	_ "github.com/thanos-io/objstore/providers/s3"
	_ "github.com/yuin/gopher-lua"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/controller-runtime"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
)
