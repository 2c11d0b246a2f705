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
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/remote"
	"github.com/hearth-dev/hearth/ingester/shipper"
	"github.com/hearth-dev/hearth/ingester/store"
)

// Ingester is a running ingester.
type Ingester struct {
	Config   *Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Push     *push.Handler
	Querier  *querier.Service

	Bucket      objstore.Bucket
	Shipper     *shipper.Shipper
	LocalBlocks *block.BucketSource // blocks on this ingester's disk
	Blocks      *block.BucketSource // blocks in the bucket

	store    atomic.Pointer[store.Store] // nil until the WAL is replayed
	cluster  atomic.Pointer[cluster]     // nil until the ring is joined
	ready    atomic.Bool                 // the WAL is replayed and the ring joined
	shutdown chan struct{}               // closed by POST /ingester/shutdown
	shutOnce sync.Once
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
	ing := &Ingester{Config: cfg, Logger: logger, Registry: reg, shutdown: make(chan struct{})}
	bkt, err := bucket.New(context.Background(), cfg.Storage, logger, reg)
	if err != nil {
		return nil, fmt.Errorf("object storage: %w", err)
	}
	ing.Bucket = bkt
	blocksDir := filepath.Join(cfg.DataDir, "blocks")
	if err := os.MkdirAll(blocksDir, 0o755); err != nil {
		return nil, err
	}
	local, err := filesystem.NewBucket(blocksDir)
	if err != nil {
		return nil, err
	}
	ing.LocalBlocks = &block.BucketSource{Bucket: local, SyncInterval: 10 * time.Second}
	ing.Blocks = &block.BucketSource{Bucket: bkt, SyncInterval: 30 * time.Second}
	ing.Shipper = shipper.New(shipper.Options{
		Dir: blocksDir, Bucket: bkt, Logger: logger, Registerer: reg, LocalRetention: cfg.Ingester.LocalRetention,
		OnUploaded: func(tenant string, id ulid.ULID) {
			if st := ing.store.Load(); st != nil {
				st.Uploaded(tenant, id.String())
			}
		},
	})
	ing.Push = push.NewHandler(cfg.Limits, distributorAppender{ing}, cfg.Auth.MultitenancyEnabled, logger, reg)
	ing.Querier = &querier.Service{
		Sources:      []querier.Source{storeSource{ing}, remoteSource{ing}, ing.LocalBlocks, ing.Blocks},
		Multitenancy: cfg.Auth.MultitenancyEnabled,
	}
	return ing, nil
}

// shipperAdapter gives the store the shipper's view it needs.
type shipperAdapter struct{ s *shipper.Shipper }

func (a shipperAdapter) Enqueue(tenant, dir string) error { return a.s.Enqueue(tenant, dir) }
func (a shipperAdapter) OverBudget(budget int64) error    { return a.s.OverBudget(budget) }

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
	blocks, err := ing.Shipper.LocalBlocks()
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, b := range blocks {
		if !b.Uploaded {
			pending = append(pending, b.ULID.String())
		}
	}
	return store.Open(store.Options{
		DataDir:            cfg.DataDir,
		WALPolicy:          cfg.WAL.Fsync,
		MaxBlockDuration:   cfg.Ingester.MaxBlockDuration,
		MaxHeadBytes:       int64(cfg.Ingester.MaxHeadBytes),
		MaxSeriesPerTenant: cfg.Limits.MaxSeriesPerTenant,
		MaxProfileSize:     cfg.Limits.MaxProfileSizeBytes,
		MaxPendingBytes:    int64(cfg.Ingester.MaxPendingUploadBytes),
		WriteBlock: func(dir, tenant string, sel head.Selection) (string, error) {
			meta, err := block.Write(dir, sel, block.WriteOptions{Tenant: tenant, Source: cfg.Ingester.Ring.InstanceID})
			return meta.ULID.String(), err
		},
		Shipper: shipperAdapter{ing.Shipper},
		BlocksWritten: func(ctx context.Context) {
			if err := ing.LocalBlocks.Sync(ctx); err != nil {
				ing.Logger.Warn("listing local blocks", "err", err)
			}
		},
		Logger:     ing.Logger,
		Registerer: ing.Registry,
	}, pending)
}

// flush cuts the head into blocks now; with wait it also waits for the upload.
func (ing *Ingester) flush(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	st := ing.store.Load()
	if st == nil {
		http.Error(w, errStarting.Error(), http.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	if err := st.Cut(r.Context(), "flush"); err != nil {
		http.Error(w, "cutting the head: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if r.URL.Query().Get("wait") == "true" {
		if err := ing.Shipper.Flush(r.Context()); err != nil {
			http.Error(w, "uploading: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	ing.Logger.Info("flushed", "wait", r.URL.Query().Get("wait") == "true", "seconds", time.Since(start).Seconds())
	_, _ = fmt.Fprintf(w, "flushed in %s\n", time.Since(start).Round(time.Millisecond))
}

// Handler is the HTTP handler with every endpoint.
func (ing *Ingester) Handler() http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{connect.WithCodec(vtCodec{}), connect.WithReadMaxBytes(64 << 20)}
	path, hd := pushv1connect.NewPusherServiceHandler(ing.Push, opts...)
	mux.Handle(path, hd)
	path, hd = querierv1connect.NewQuerierServiceHandler(ing.Querier, append(opts, connect.WithInterceptors(remote.SelectorInterceptor()))...)
	mux.Handle(path, hd)
	// Between ingesters: replica writes and reads.
	mux.Handle(distributor.AppendPath, distributor.NewInternalHandler(storeAppender{ing}, distributor.HandlerOptions{MaxProfileSize: ing.Config.Limits.MaxProfileSizeBytes, Limits: &ing.Config.Limits, Logger: ing.Logger}))
	sel := remote.NewSelectHandler(storeSource{ing}, remote.HandlerOptions{Logger: ing.Logger})
	mux.Handle(remote.SelectPath, sel)
	mux.Handle(remote.SeriesLabelsPath, sel)
	mux.HandleFunc("/ring", ing.ringHandler)
	mux.HandleFunc("/ingester/prepare-stop", ing.ringHandler)
	mux.HandleFunc("/ingester/prepare-shutdown", ing.ringHandler)
	mux.HandleFunc("/ingester/shutdown", ing.shutdownHandler)
	mux.Handle("/ingest", ing.Push)
	mux.HandleFunc("/ingester/flush", ing.flush)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(ing.Registry, promhttp.HandlerOpts{Registry: ing.Registry}))
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := ing.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
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

// Ready is nil when the WAL is replayed, the ingester is ACTIVE in the ring
// and the ring is healthy enough (dskit's readiness, with min_ready_duration).
func (ing *Ingester) Ready() error {
	if !ing.ready.Load() {
		return errors.New("starting: replaying the write-ahead log and joining the ring")
	}
	c := ing.cluster.Load()
	if c == nil {
		return errors.New("not in the ring")
	}
	return c.ring.Ready()
}

// shutdownHandler is POST /ingester/shutdown: leave the ring for good now
// (flush and upload everything, unregister), then exit.
func (ing *Ingester) shutdownHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	ing.shutOnce.Do(func() { close(ing.shutdown) })
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("shutting down: flushing, uploading and leaving the ring\n"))
}

// Run serves until ctx is done (a normal stop: keep the tokens and the WAL,
// exit fast) or /ingester/shutdown is called (a final stop), then stops.
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
	go func() { _ = ing.Shipper.Run(runCtx) }()

	c, err := ing.joinCluster(ctx, ing.listener.Addr().(*net.TCPAddr).Port)
	if err != nil {
		_ = st.Close()
		_ = ing.server.Close()
		return fmt.Errorf("joining the ring: %w", err)
	}
	ing.cluster.Store(c)
	ing.ready.Store(true)
	ing.Logger.Info("ingester active in the ring", "addr", ing.Addr(), "instance", c.ring.InstanceID(), "ring_addr", c.ring.Addr())

	final := false
	select {
	case err := <-errc:
		_ = st.Close()
		_ = c.ring.Stop()
		return err
	case <-ctx.Done():
		final = c.ring.PrepareShutdownSet()
	case <-ing.shutdown:
		final = true
	}
	start := time.Now()
	ing.ready.Store(false)
	// LEAVING first: the others stop sending writes here.
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := c.ring.SetLeaving(lctx); err != nil {
		ing.Logger.Warn("moving to LEAVING", "err", err)
	} else {
		// Keep taking writes until every peer routes them elsewhere: one refused
		// here could fail its quorum.
		t0 := time.Now()
		pending := c.ring.WaitSeenLeaving(lctx, ing.Config.Ingester.LeavePropagationTimeout)
		ing.Logger.Info("peers see this ingester LEAVING", "seconds", time.Since(t0).Seconds(), "not_confirmed", len(pending))
	}
	cancel()
	var stopErr error
	if final {
		// No write may be acknowledged after the last flush: the others skip
		// a LEAVING member, and what still arrives here is refused (another
		// replica takes it).
		st.StopWrites()
		stopErr = ing.finalFlush(st)
	}
	// Serve on until clients stop sending here (their endpoints dropped this pod
	// when its deletion began); what arrives is forwarded to the ACTIVE replicas.
	if d := ing.Config.ShutdownDelay - time.Since(start); d > 0 {
		ing.Logger.Info("serving on before closing the port (-shutdown-delay)", "seconds", d.Seconds())
		time.Sleep(d)
	}
	// Finish the requests in flight, then sync the WAL. No flush on a normal
	// stop: the WAL and the tokens bring everything back on start.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ing.server.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		ing.Logger.Warn("stopping the HTTP server", "err", err)
	}
	c.distributor.Drain()
	if !final {
		ing.flushOnStop(st)
	}
	stopRun()
	if err := st.Close(); err != nil && stopErr == nil {
		stopErr = err
	}
	if final && stopErr == nil {
		uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := c.ring.Unregister(uctx); err != nil {
			stopErr = fmt.Errorf("leaving the ring: %w", err)
		}
		cancel()
	}
	if err := c.ring.Stop(); err != nil && stopErr == nil {
		stopErr = err
	}
	ing.Logger.Info("ingester stopped", "final", final, "seconds", time.Since(start).Seconds(), "err", stopErr)
	return stopErr
}

// flushOnStop writes the head into local blocks on a normal stop when the next
// start would otherwise replay more WAL than -ingester.flush-on-stop-wal-bytes:
// a head is written several times faster than its WAL is replayed (the WAL
// repeats every profile's symbols). The blocks are uploaded after the start.
func (ing *Ingester) flushOnStop(st *store.Store) {
	lim := int64(ing.Config.Ingester.FlushOnStopWALBytes)
	if lim <= 0 {
		return
	}
	n := st.ReplayBytes()
	if n <= lim {
		return
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), ing.Config.Ingester.FinalFlushTimeout)
	defer cancel()
	if err := st.Cut(ctx, "stop"); err != nil {
		ing.Logger.Warn("writing the head on stop failed; the next start replays the WAL", "wal_bytes", n, "err", err)
		return
	}
	ing.Logger.Info("head written into local blocks so that the next start need not replay the WAL",
		"wal_bytes", n, "seconds", time.Since(t0).Seconds())
}

// finalFlush cuts everything into blocks and uploads them: after it, nothing
// of this ingester is needed to answer a query.
func (ing *Ingester) finalFlush(st *store.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), ing.Config.Ingester.FinalFlushTimeout)
	defer cancel()
	ing.Logger.Info("final stop: flushing and uploading everything before leaving the ring")
	if err := st.Cut(ctx, "shutdown"); err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	if err := ing.Shipper.Flush(ctx); err != nil {
		return fmt.Errorf("final upload: %w", err)
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
