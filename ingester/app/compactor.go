package app

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/compactor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/shipper"
)

// initCompactor is the compactor module: it compacts the bucket, jobs going
// to the ring owner of their key. It needs the bucket (built in New) and the
// ring; with -compactor.enabled=false there is nothing to run.
func (a *App) initCompactor() (services.Service, error) {
	cfg := a.Config
	if !cfg.Compactor.Enabled {
		return nil, nil
	}
	if cfg.Compactor.FirstLevelWait < cfg.Ingester.MaxBlockDuration {
		a.Logger.Warn("-compactor.first-level-compaction-wait-period is shorter than -ingester.max-block-duration: ranges are compacted before every replica's block arrives, and late blocks are merged in by more jobs",
			"wait", cfg.Compactor.FirstLevelWait, "max_block_duration", cfg.Ingester.MaxBlockDuration)
	}
	r := a.Ring
	c, err := compactor.New(compactor.Options{
		Config: cfg.Compactor, Bucket: a.Bucket, Dir: filepath.Join(cfg.DataDir, "compactor"),
		Instance: cfg.Ingester.Ring.InstanceID, Logger: a.Logger, Registerer: a.Registry,
		Owns: func(tenant string, key uint32) (bool, error) {
			owner, err := r.ShardOwner(tenant, cfg.Compactor.TenantShardSize, key)
			return owner == r.InstanceID(), err
		},
		InShard: func(tenant string) (bool, error) { return r.InShard(tenant, cfg.Compactor.TenantShardSize), nil },
	})
	if err != nil {
		return nil, err
	}
	a.Compactor = c
	a.internalMux.Handle("/compactor/status", c) // lists tenants: internal only
	return c, nil
}

// uploadClock remembers when this ingester's blocks reached the bucket.
type uploadClock struct {
	mu sync.Mutex
	at map[ulid.ULID]time.Time
}

// set records block id's upload at t, and forgets uploads older than forget
// (0: never).
func (u *uploadClock) set(id ulid.ULID, t time.Time, forget time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.at == nil {
		u.at = map[ulid.ULID]time.Time{}
	}
	u.at[id] = t
	for k, v := range u.at {
		if forget > 0 && time.Since(v) > forget {
			delete(u.at, k)
		}
	}
}

// uploadMemory is how long uploadClock must remember an upload: as long as
// the local copy can exist (its ULID time plus the local retention, and the
// upload is after the ULID time), plus an hour. Forgetting sooner made a
// local block 1-6h old look "not in the bucket yet" to every peer query.
func uploadMemory(localRetention time.Duration) time.Duration {
	switch {
	case localRetention < 0:
		return 0 // local copies are kept forever
	case localRetention == 0:
		localRetention = shipper.DefaultLocalRetention
	}
	return localRetention + time.Hour
}

// recent reports whether block id is not in the bucket yet (as far as this
// process knows) or got there less than window ago.
func (u *uploadClock) recent(id ulid.ULID, window time.Duration) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.at[id]
	return !ok || time.Since(t) < window
}

// peerWindow is how long after its upload a local block is still served to
// the peers' queries: until their bucket listing (every Blocks.SyncInterval)
// shows it.
func (a *App) peerWindow() time.Duration { return 2*a.Blocks.SyncInterval + 5*time.Second }

// peerSource is what this ingester answers a peer's query with: its heads,
// and its local blocks that the peer may not find in the bucket yet (not
// uploaded, or uploaded too recently for the peer's listing). Without the
// blocks, a profile would be invisible to a peer that is not its replica
// between the cut that dropped the head and the peer's next listing.
type peerSource struct{ a *App }

func (p peerSource) local() querier.Source {
	w := p.a.peerWindow()
	return p.a.LocalBlocks.View(func(m *block.Meta) bool { return p.a.uploads.recent(m.ULID, w) })
}

func (p peerSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	out, err := p.a.Store.Select(ctx, tenant, ptype, match, start, end)
	if err != nil {
		return nil, err
	}
	more, err := p.local().Select(ctx, tenant, ptype, match, start, end)
	return append(out, more...), err
}

func (p peerSource) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	out, err := p.a.Store.SeriesLabels(ctx, tenant, match, start, end)
	if err != nil {
		return nil, err
	}
	more, err := p.local().SeriesLabels(ctx, tenant, match, start, end)
	return append(out, more...), err
}
