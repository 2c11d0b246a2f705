// Package app is `hearth ingester`: its config, and its components wired as
// a graph of dskit modules (modules.go) run under one services.Manager; a
// component that fails stops the process. stop.go holds the stop sequences.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/ingester/compactor"
	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/remote"
	"github.com/hearth-dev/hearth/ingester/ring"
	"github.com/hearth-dev/hearth/ingester/shipper"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// App is one ingester process: every component, built by New, run by Run.
type App struct {
	Config   *Config
	Logger   *slog.Logger
	Registry *prometheus.Registry

	// Plain objects, no lifecycle.
	Bucket      objstore.Bucket
	LocalBlocks *block.BucketSource // blocks on this ingester's disk
	Blocks      *block.BucketSource // blocks in the bucket

	// Modules (modules.go).
	Shipper     *shipper.Shipper
	Store       *store.Store
	Ring        *ring.Ring
	Distributor *distributor.Distributor
	Remote      *remote.Source
	Push        *push.Handler
	Querier     *querier.Service
	Compactor   *compactor.Compactor  // nil when -compactor.enabled=false
	Overrides   *validation.Overrides // each tenant's effective limits (runtimeconfig.go)

	uploads   uploadClock      // when local blocks reached the bucket
	deletions *tenantDeletions // tenants being deleted (tenantdeletion.go)

	blocksDir   string
	mux         *http.ServeMux // the public server's routes; modules add theirs in init
	server      *httpServer    // the public server
	internalMux *http.ServeMux // the internal server's routes (internal.go)
	internal    *httpServer    // the internal server: peers, the operator, prestop
	peers       *http.Client   // calls the peers' internal servers (-ingester.client.tls-*)
	peerScheme  string
	servers     []*httpServer  // every HTTP server: the stop sequence drains them
	services    []namedService // in graph order
	lifecycle   services.Service
	final       atomic.Bool // the stop under way is a final one
	stopStart   time.Time
	shutdown    chan struct{} // closed by POST /ingester/shutdown
	shutOnce    sync.Once
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

// New builds an ingester from its config: every module is built (the HTTP
// port is bound) but nothing runs until Run.
func New(cfg *Config, logger *slog.Logger) (*App, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	formatver.Register(reg) // hearth_unsupported_format_version_total
	a := &App{Config: cfg, Logger: logger, Registry: reg, mux: http.NewServeMux(), internalMux: http.NewServeMux(), shutdown: make(chan struct{})}
	bkt, err := bucket.New(context.Background(), cfg.Storage, logger, reg)
	if err != nil {
		return nil, fmt.Errorf("object storage: %w", err)
	}
	a.Bucket = bkt
	a.blocksDir = filepath.Join(cfg.DataDir, "blocks")
	if err := os.MkdirAll(a.blocksDir, 0o755); err != nil {
		return nil, err
	}
	local, err := filesystem.NewBucket(a.blocksDir)
	if err != nil {
		return nil, err
	}
	// Both block sources charge their reads to the query's budget
	// (max_fetched_bytes_per_query).
	a.LocalBlocks = &block.BucketSource{Bucket: querylimit.Bucket(local), SyncInterval: 10 * time.Second}
	// Readers list the bucket well within the compactor's deletion delay, so that
	// they see a deletion mark (and stop reading its block) long before the
	// block goes.
	a.Blocks = &block.BucketSource{Bucket: querylimit.Bucket(bkt), SyncInterval: min(30*time.Second, max(cfg.Compactor.DeletionDelay/4, 100*time.Millisecond))}
	if err := a.initModules(); err != nil {
		return nil, err
	}
	return a, nil
}

// Addr is the bound address of the public HTTP server.
func (a *App) Addr() string { return a.server.Addr() }

// Ready is nil when the WAL is replayed, the ingester is ACTIVE in the ring
// and the ring is healthy enough (dskit's readiness, with min_ready_duration).
func (a *App) Ready() error {
	if a.lifecycle.State() != services.Running {
		return errors.New("starting: replaying the write-ahead log and joining the ring")
	}
	return a.Ring.Ready()
}

// Run starts every module and serves until ctx is done (a normal stop: keep
// the tokens and the WAL, exit fast), /ingester/shutdown is called (a final
// stop), or a module fails; then it stops them all. It returns the first
// module's failure, if any.
func (a *App) Run(ctx context.Context) error {
	svcs := make([]services.Service, len(a.services))
	for i, s := range a.services {
		svcs[i] = s.Service
	}
	mgr, err := services.NewManager(svcs...)
	if err != nil {
		return err
	}
	healthy, failed := make(chan struct{}), make(chan struct{})
	var failOnce sync.Once
	mgr.AddListener(services.NewManagerListener(func() { close(healthy) }, nil, func(s services.Service) {
		a.Logger.Error("a component failed: stopping the ingester", "module", a.moduleName(s), "err", s.FailureCase())
		failOnce.Do(func() { close(failed) })
	}))
	if err := mgr.StartAsync(context.Background()); err != nil {
		return err
	}
	a.Logger.Info("ingester listening", "addr", a.Addr(), "data_dir", a.Config.DataDir)
	select {
	case <-ctx.Done():
	case <-failed:
	case <-healthy:
		select {
		case <-ctx.Done():
			a.final.Store(a.Ring.PrepareShutdownSet())
		case <-a.shutdown:
			a.final.Store(true)
		case <-failed:
		}
	}
	a.stopStart = time.Now()
	mgr.StopAsync()
	_ = mgr.AwaitStopped(context.Background())
	err = a.failure()
	a.Logger.Info("ingester stopped", "final", a.final.Load(), "seconds", time.Since(a.stopStart).Seconds(), "err", err)
	return err
}

// failure is the first module failure in graph order (a module that could
// not start because a dependency failed comes after that dependency).
func (a *App) failure() error {
	for _, s := range a.services {
		if err := s.FailureCase(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (a *App) moduleName(s services.Service) string {
	for _, n := range a.services {
		if n.Service == s {
			return n.name
		}
	}
	return "?"
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
	a, err := New(cfg, logger)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
