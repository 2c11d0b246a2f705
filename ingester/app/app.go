// Package app wires the ingester together: config, logging, metrics, the
// head, the push and query APIs, and the HTTP server that carries them all.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// Ingester is a running ingester.
type Ingester struct {
	Config   *Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Head     *head.Head
	Push     *push.Handler
	Querier  *querier.Service

	ready    atomic.Bool
	listener net.Listener
	server   *http.Server
}

// NewLogger builds the structured logger the config asks for.
func NewLogger(c LogConfig) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", c.Level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "logfmt", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: use logfmt or json", c.Format)
}

// New builds an ingester from its config; Run starts it.
func New(cfg *Config, logger *slog.Logger) (*Ingester, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := head.New(head.Options{MaxSeriesPerTenant: cfg.Limits.MaxSeriesPerTenant, Registerer: reg})
	ing := &Ingester{Config: cfg, Logger: logger, Registry: reg, Head: h}
	ing.Push = push.NewHandler(cfg.Limits, headAppender{h}, cfg.Auth.MultitenancyEnabled, logger, reg)
	ing.Querier = &querier.Service{Sources: []querier.Source{querier.HeadSource{Head: h}}, Multitenancy: cfg.Auth.MultitenancyEnabled}
	return ing, nil
}

// headAppender stores straight into the head (no WAL yet).
type headAppender struct{ h *head.Head }

func (a headAppender) Append(_ context.Context, tenant string, ps []push.Profile) error {
	for i := range ps {
		if _, err := a.h.Append(tenant, ps[i].ID, ps[i].Labels, ps[i].Profile, ps[i].TimeNanos); err != nil {
			return err
		}
	}
	return nil
}

// Handler is the HTTP handler with every endpoint.
func (ing *Ingester) Handler() http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{connect.WithCodec(vtCodec{}), connect.WithReadMaxBytes(64 << 20)}
	path, hd := pushv1connect.NewPusherServiceHandler(ing.Push, opts...)
	mux.Handle(path, hd)
	path, hd = querierv1connect.NewQuerierServiceHandler(ing.Querier, opts...)
	mux.Handle(path, hd)
	mux.Handle("/ingest", ing.Push)
	mux.Handle("/metrics", promhttp.HandlerFor(ing.Registry, promhttp.HandlerOpts{Registry: ing.Registry}))
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ing.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return instrument(ing.Registry, mux)
}

// Listen binds the HTTP port (0 picks a free one; see Addr).
func (ing *Ingester) Listen() error {
	addr := net.JoinHostPort(ing.Config.Server.HTTPListenAddress, strconv.Itoa(ing.Config.Server.HTTPListenPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	ing.listener = l
	return nil
}

// Addr is the bound HTTP address.
func (ing *Ingester) Addr() string { return ing.listener.Addr().String() }

// Run serves until ctx is done, then shuts down gracefully.
func (ing *Ingester) Run(ctx context.Context) error {
	if ing.listener == nil {
		if err := ing.Listen(); err != nil {
			return err
		}
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC without TLS
	ing.server = &http.Server{Handler: ing.Handler(), Protocols: protocols, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- ing.server.Serve(ing.listener) }()
	ing.ready.Store(true)
	ing.Logger.Info("ingester ready", "addr", ing.Addr(), "data_dir", ing.Config.DataDir)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	ing.ready.Store(false)
	ing.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ing.server.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Main is `hearth ingester`.
func Main(ctx context.Context, args []string) error {
	cfg, _, err := ParseConfig("hearth ingester", args)
	if err != nil {
		if errors.Is(err, flagErrHelp) {
			return nil
		}
		return err
	}
	logger, err := NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	ing, err := New(cfg, logger)
	if err != nil {
		return err
	}
	return ing.Run(ctx)
}
