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
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/store"
)

// Ingester is a running ingester.
type Ingester struct {
	Config   *Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Push     *push.Handler
	Querier  *querier.Service

	store    atomic.Pointer[store.Store] // nil until the WAL is replayed
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
	ing := &Ingester{Config: cfg, Logger: logger, Registry: reg}
	ing.Push = push.NewHandler(cfg.Limits, storeAppender{ing}, cfg.Auth.MultitenancyEnabled, logger, reg)
	ing.Querier = &querier.Service{Sources: []querier.Source{storeSource{ing}}, Multitenancy: cfg.Auth.MultitenancyEnabled}
	return ing, nil
}

// errStarting answers writes and reads that arrive while the WAL is replayed.
var errStarting = connect.NewError(connect.CodeUnavailable, errors.New("the ingester is starting: replaying its write-ahead log"))

type storeAppender struct{ ing *Ingester }

func (a storeAppender) Append(ctx context.Context, tenant string, ps []push.Profile) error {
	s := a.ing.store.Load()
	if s == nil {
		return errStarting
	}
	return s.Append(ctx, tenant, ps)
}

type storeSource struct{ ing *Ingester }

func (a storeSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	s := a.ing.store.Load()
	if s == nil {
		return nil, errStarting
	}
	return s.Select(ctx, tenant, ptype, match, start, end)
}

func (a storeSource) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	s := a.ing.store.Load()
	if s == nil {
		return nil, errStarting
	}
	return s.SeriesLabels(ctx, tenant, match, start, end)
}

// Store is the storage engine, nil while the WAL is replayed.
func (ing *Ingester) Store() *store.Store { return ing.store.Load() }

// openStore replays the WAL and opens the storage engine.
func (ing *Ingester) openStore() (*store.Store, error) {
	cfg := ing.Config
	return store.Open(store.Options{
		DataDir:            cfg.DataDir,
		WALPolicy:          cfg.WAL.Fsync,
		MaxBlockDuration:   cfg.Ingester.MaxBlockDuration,
		MaxHeadBytes:       cfg.Ingester.MaxHeadBytes,
		MaxSeriesPerTenant: cfg.Limits.MaxSeriesPerTenant,
		MaxProfileSize:     cfg.Limits.MaxProfileSizeBytes,
		Logger:             ing.Logger,
		Registerer:         ing.Registry,
	}, nil)
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
	ing.Logger.Info("ingester listening", "addr", ing.Addr(), "data_dir", ing.Config.DataDir)

	st, err := ing.openStore()
	if err != nil {
		_ = ing.server.Close()
		return fmt.Errorf("opening the storage: %w", err)
	}
	ing.store.Store(st)
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go st.Run(runCtx)
	ing.ready.Store(true)
	ing.Logger.Info("ingester ready", "addr", ing.Addr())

	select {
	case err := <-errc:
		_ = st.Close()
		return err
	case <-ctx.Done():
	}
	// A normal stop: refuse new writes, finish those in flight, sync the WAL,
	// exit. No flush: the WAL brings everything back on start.
	start := time.Now()
	ing.ready.Store(false)
	stopRun()
	closeErr := st.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ing.server.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	ing.Logger.Info("ingester stopped", "seconds", time.Since(start).Seconds())
	return closeErr
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
