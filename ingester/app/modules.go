package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/dskit/modules"
	"github.com/grafana/dskit/services"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/ingest/otlp"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/remote"
	"github.com/hearth-dev/hearth/ingester/ring"
	"github.com/hearth-dev/hearth/ingester/shipper"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/transport"
	"github.com/hearth-dev/hearth/ingester/usage"
	"github.com/hearth-dev/hearth/internal/kitlog"
)

// The modules of `hearth ingester`. Each is built by its init function (in
// dependency order, before anything starts) and, when it has a lifecycle,
// runs as a dskit service: it starts after its dependencies are running and
// stops before they stop.
const (
	Server   = "server"   // the public HTTP listener
	Shipper  = "shipper"  // uploads local blocks to the bucket
	Store    = "store"    // WAL replay (starting), the cut loop (running), WAL sync and close (stopping)
	Ring     = "ring"     // memberlist KV, ring client, lifecycler: ACTIVE once started, LEAVING/unregistered when stopped
	API      = "api"      // distributor, remote reader, push and query handlers (no lifecycle: routes only)
	Ingester = "ingester" // the whole ingester: ready once every module runs; its stop is the stop sequence (stop.go)
)

// Compact is the compactor module: it compacts the bucket, jobs owned through
// the ring (-compactor.enabled).
const Compact = "compactor"

// module is one entry of the module graph.
type module struct {
	name string
	init func() (services.Service, error) // nil service: nothing to run
	deps []string
}

// modules is the module graph: adding a component is one line here and its
// init function. Start order follows the dependencies: server, shipper,
// store, ring, api, compactor, ingester. Stop order is the reverse, after the ingester's
// stop sequence.
func (a *App) modules() []module {
	return []module{
		{Server, a.initServer, nil},
		{InternalServer, a.initInternalServer, nil},
		{RuntimeConfig, a.initRuntimeConfig, []string{Server, InternalServer}},
		{Shipper, a.initShipper, nil},
		{Store, a.initStore, []string{Server, InternalServer, Shipper, RuntimeConfig}},
		{Ring, a.initRing, []string{Server, InternalServer, Store}},
		{API, a.initAPI, []string{Server, InternalServer, Store, Shipper, Ring, RuntimeConfig}},
		{Compact, a.initCompactor, []string{Server, Ring, RuntimeConfig}},
		{TenantDeletion, a.initTenantDeletion, []string{InternalServer, Store, Shipper, Ring, API}},
		{Ingester, a.initIngester, []string{Server, InternalServer, RuntimeConfig, Store, Shipper, Ring, API, Compact, TenantDeletion}},
	}
}

// initModules builds every module and the services to run, in graph order.
func (a *App) initModules() error {
	mm := modules.NewManager(kitlog.New(a.Logger))
	graph := a.modules()
	for _, m := range graph {
		mm.RegisterModule(m.name, m.init)
	}
	for _, m := range graph {
		if err := mm.AddDependency(m.name, m.deps...); err != nil {
			return err
		}
	}
	svcs, err := mm.InitModuleServices(Ingester)
	if err != nil {
		return err
	}
	for _, m := range graph {
		if s, ok := svcs[m.name]; ok {
			a.services = append(a.services, namedService{m.name, s})
		}
	}
	return nil
}

type namedService struct {
	name string
	services.Service
}

func (a *App) initServer() (services.Service, error) {
	cfg := a.Config.Server
	a.mux.Handle("/metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{Registry: a.Registry}))
	a.mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	a.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	addr := net.JoinHostPort(cfg.HTTPListenAddress, strconv.Itoa(cfg.HTTPListenPort))
	tlsCfg, err := cfg.HTTPTLS.TLSConfig(a.Logger, "h2", "http/1.1")
	if err != nil {
		return nil, err
	}
	s, err := newHTTPServer("server", addr, instrument(a.Registry, a.mux), a.Logger, tlsCfg, cfg.HTTPTLS.AcceptPlain)
	if err != nil {
		return nil, err
	}
	a.server = s
	a.servers = append(a.servers, s)
	return s, nil
}

func (a *App) initShipper() (services.Service, error) {
	cfg := a.Config
	a.Shipper = shipper.New(shipper.Options{
		Dir: a.blocksDir, Bucket: a.Bucket, Logger: a.Logger, Registerer: a.Registry, LocalRetention: cfg.Ingester.LocalRetention,
		// The store is built next (it depends on the shipper) and this runs only
		// once the shipper runs: the WAL segments a block covers can go.
		OnUploaded: func(tenant string, id ulid.ULID) {
			a.uploads.set(id, time.Now(), uploadMemory(cfg.Ingester.LocalRetention))
			a.Store.Uploaded(tenant, id.String())
		},
	})
	// Blocks uploaded before a restart: peers' listings have long seen them.
	if blocks, err := a.Shipper.LocalBlocks(); err == nil {
		for _, b := range blocks {
			if b.Uploaded {
				a.uploads.set(b.ULID, b.UploadedAt, uploadMemory(cfg.Ingester.LocalRetention))
			}
		}
	}
	return a.Shipper, nil
}

func (a *App) initStore() (services.Service, error) {
	cfg := a.Config
	a.Store = store.New(store.Options{
		DataDir:              cfg.DataDir,
		WALPolicy:            cfg.WAL.Fsync,
		MaxBlockDuration:     cfg.Ingester.MaxBlockDuration,
		MaxHeadBytes:         int64(cfg.Ingester.MaxHeadBytes),
		MaxSeriesPerTenant:   cfg.Limits.MaxSeriesPerTenant,
		MaxProfileSize:       cfg.Limits.MaxProfileSizeBytes,
		TenantLimits:         a.Overrides,
		MaxPendingBytes:      int64(cfg.Ingester.MaxPendingUploadBytes),
		HeadSnapshotWALBytes: int64(cfg.Ingester.HeadSnapshotWALBytes),
		WriteBlock: func(dir, tenant string, sel head.Selection) (string, error) {
			meta, err := block.Write(dir, sel, block.WriteOptions{Tenant: tenant, Source: cfg.Ingester.Ring.InstanceID})
			return meta.ULID.String(), err
		},
		Shipper: a.Shipper,
		BlocksWritten: func(ctx context.Context) {
			if err := a.LocalBlocks.Sync(ctx); err != nil {
				a.Logger.Warn("listing local blocks", "err", err)
			}
		},
		Logger:     a.Logger,
		Registerer: a.Registry,
	})
	a.internalMux.Handle("/ingester/flush", whileStarting(a.Store, http.HandlerFunc(a.flush), plainError))
	return a.Store, nil
}

func (a *App) initRing() (services.Service, error) {
	cfg := a.Config
	r, err := ring.New(ring.Config{Ring: cfg.Ingester.Ring, Memberlist: cfg.Memberlist}, a.internal.Port(), cfg.DataDir, a.Logger, a.Registry)
	if err != nil {
		return nil, err
	}
	a.Ring = r
	// Peers are called on their internal listeners (the ring's addresses),
	// with TLS and this ingester's client certificate when configured.
	if a.peers, a.peerScheme, err = a.peerClient(); err != nil {
		return nil, fmt.Errorf("ingester client TLS: %w", err)
	}
	r.SetPeerClient(a.peers, a.peerScheme)
	h := whileStarting(r.Service(), r.Handler(), plainError)
	a.mux.Handle(ring.PathRing, readOnly(h)) // public: the ring page only
	a.internalMux.Handle(ring.PathRing, h)   // internal: POST /ring forget too
	a.internalMux.Handle(ring.PathPrepareStop, h)
	a.internalMux.Handle(ring.PathPrepareShutdown, h)
	return r.Service(), nil
}

func (a *App) initAPI() (services.Service, error) {
	cfg := a.Config
	lookups := ringAdapter{a.Ring}
	self := a.Ring.InstanceID()
	peers, scheme := a.peers, a.peerScheme
	// Instance limits: checked before a push's or a replica append's body is
	// read (Wrap), and on every local append, a peer's included (Appender).
	il := push.NewInstanceLimiter(cfg.Ingester.InstanceLimits, a.Store, a.Registry)
	// Tenants being deleted: writes refused, queries answer nothing (tenantdeletion.go).
	a.deletions = newTenantDeletions(a, a.Blocks.SyncInterval)
	local := storeRefusal{il.Appender(a.Store)}
	a.Distributor = distributor.New(distributor.Options{
		Ring: lookups, Self: self, Local: local, Client: peers, Scheme: scheme, Logger: a.Logger, Registerer: a.Registry,
	})
	a.Remote = remote.NewSource(remote.SourceOptions{Ring: lookups, Self: self, Client: peers, Scheme: scheme, Logger: a.Logger, Registerer: a.Registry})
	a.Push = push.NewHandler(a.Overrides, frontDoor{a.deletions, a.Distributor}, cfg.Auth.MultitenancyEnabled, a.Logger, a.Registry)
	a.Push.Normalize = cfg.Normalize
	// One limiter for every query entry point (querier.v1 and render): they
	// share its slots and queue.
	a.Querier = &querier.Service{
		Sources:      a.deletions.hide(a.Store, a.Remote, a.LocalBlocks, a.Blocks),
		Multitenancy: cfg.Auth.MultitenancyEnabled,
		Limiter:      querier.NewLimiter(cfg.Querier, a.Overrides, cfg.Auth.MultitenancyEnabled),
	}

	// Public: the push and query APIs need the store and the ring.
	ready := a.Ring.Service()
	opts := []connect.HandlerOption{connect.WithCodec(vtCodec{}), connect.WithReadMaxBytes(64 << 20)}
	path, h := pushv1connect.NewPusherServiceHandler(a.Push, opts...)
	a.mux.Handle(path, whileStarting(ready, il.Wrap(h, true, cfg.Auth.MultitenancyEnabled, connectError), connectError))
	path, h = querierv1connect.NewQuerierServiceHandler(a.Querier, append(opts, connect.WithInterceptors(remote.SelectorInterceptor(), a.Querier.Limiter.Interceptor()))...)
	a.mux.Handle(path, whileStarting(ready, h, connectError))
	a.mux.Handle("/ingest", whileStarting(ready, il.Wrap(a.Push, true, cfg.Auth.MultitenancyEnabled, plainError), plainError))
	otlpHandler := whileStarting(ready, il.Wrap((&otlp.Server{Push: a.Push}).Handler(opts...), true, cfg.Auth.MultitenancyEnabled, connectError), connectError)
	a.mux.Handle(otlp.ExportProcedure, otlpHandler)
	a.mux.Handle(otlp.HTTPPath, otlpHandler)
	// What Grafana calls beside querier.v1 (settings, ad hoc profiles, render).
	querier.RegisterHTTP(func(path string, h http.Handler) {
		if path != querier.RenderPath && path != querier.RenderDiffPath { // render reads the hidden sources
			h = a.deletions.refuseWhileDeleting(h, cfg.Auth.MultitenancyEnabled)
		}
		a.mux.Handle(path, whileStarting(ready, h, connectError))
	},
		querier.Deps{Service: a.Querier, Bucket: a.Bucket, MaxProfileSize: cfg.Limits.MaxProfileSizeBytes, Options: opts})
	a.internalMux.HandleFunc("/ingester/shutdown", a.shutdownHandler)

	// Between ingesters: replica writes and reads need the store only. The
	// reads run in the limiter's pool for peers (querier.Limiter: a pool of
	// their own, so that queries waiting on each other's ingesters cannot
	// deadlock).
	a.internalMux.Handle(distributor.AppendPath, whileStarting(a.Store, il.Wrap(distributor.NewInternalHandler(local, distributor.HandlerOptions{Limits: a.Overrides, Logger: a.Logger}), false, false, replicaError), replicaError))
	sel := whileStarting(a.Store, remote.NewSelectHandler(peerSource{a}, remote.HandlerOptions{Logger: a.Logger, Run: a.Querier.Limiter.RunPeer}), replicaError)
	a.internalMux.Handle(remote.SelectPath, sel)
	a.internalMux.Handle(remote.SeriesLabelsPath, sel)
	// The usage metrics and rate limiters of tenants that stopped pushing go
	// after a while.
	return a.Push.CleanupService(usage.CleanupInterval, usage.DefaultInactiveTimeout), nil
}

// initIngester is the ingester as a whole: it runs once every module runs
// (the WAL is replayed and the ring joined: ready), and its stopping is the
// stop sequence, before any module stops.
func (a *App) initIngester() (services.Service, error) {
	a.lifecycle = services.NewIdleService(func(context.Context) error {
		a.Logger.Info("ingester active in the ring", "addr", a.Addr(), "instance", a.Ring.InstanceID(), "ring_addr", a.Ring.Addr())
		return nil
	}, a.stop).WithName(Ingester)
	return a.lifecycle, nil
}

// errStarting answers requests that arrive while the WAL is replayed or the
// ring joined.
var errStarting = connect.NewError(connect.CodeUnavailable, errors.New("the ingester is starting: replaying its write-ahead log"))

// whileStarting answers errStarting, in the caller's protocol, until svc has
// started.
func whileStarting(svc services.Service, h http.Handler, write func(http.ResponseWriter, *http.Request, *connect.Error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := svc.State(); st == services.New || st == services.Starting {
			write(w, r, errStarting)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func plainError(w http.ResponseWriter, _ *http.Request, err *connect.Error) {
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}

func replicaError(w http.ResponseWriter, _ *http.Request, err *connect.Error) {
	transport.WriteError(w, err)
}

var connectErrors = connect.NewErrorWriter()

func connectError(w http.ResponseWriter, r *http.Request, err *connect.Error) {
	if connectErrors.IsSupported(r) {
		_ = connectErrors.Write(w, r, err)
		return
	}
	plainError(w, r, err)
}

// flush cuts the head into blocks now; with wait it also waits for the upload.
func (a *App) flush(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	start := time.Now()
	if err := a.Store.Cut(r.Context(), "flush"); err != nil {
		http.Error(w, "cutting the head: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if r.URL.Query().Get("wait") == "true" {
		if err := a.Shipper.Flush(r.Context()); err != nil {
			http.Error(w, "uploading: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	a.Logger.Info("flushed", "wait", r.URL.Query().Get("wait") == "true", "seconds", time.Since(start).Seconds())
	_, _ = fmt.Fprintf(w, "flushed in %s\n", time.Since(start).Round(time.Millisecond))
}

// shutdownHandler is POST /ingester/shutdown: leave the ring for good now
// (flush and upload everything, unregister), then exit.
func (a *App) shutdownHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	a.shutOnce.Do(func() { close(a.shutdown) })
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("shutting down: flushing, uploading and leaving the ring\n"))
}
