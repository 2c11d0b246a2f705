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
)

// newCompactor builds the compactor: jobs go to the ring owner of their key,
// once this ingester has joined the ring.
func newCompactor(ing *Ingester) (*compactor.Compactor, error) {
	cfg := ing.Config
	if cfg.Compactor.FirstLevelWait < cfg.Ingester.MaxBlockDuration {
		ing.Logger.Warn("-compactor.first-level-compaction-wait-period is shorter than -ingester.max-block-duration: ranges are compacted before every replica's block arrives, and late blocks are merged in by more jobs",
			"wait", cfg.Compactor.FirstLevelWait, "max_block_duration", cfg.Ingester.MaxBlockDuration)
	}
	return compactor.New(compactor.Options{
		Config: cfg.Compactor, Bucket: ing.Bucket, Dir: filepath.Join(cfg.DataDir, "compactor"),
		Instance: cfg.Ingester.Ring.InstanceID, Logger: ing.Logger, Registerer: ing.Registry,
		Owns: func(key uint32) (bool, error) {
			c := ing.cluster.Load()
			if c == nil {
				return false, errStarting
			}
			owner, err := c.ring.Owner(key)
			return owner == c.ring.InstanceID(), err
		},
	})
}

// startCompactor starts the compactor service (when enabled) and returns its stop.
func (ing *Ingester) startCompactor(ctx context.Context) (stop func()) {
	if ing.Compactor == nil {
		return func() {}
	}
	if err := services.StartAndAwaitRunning(ctx, ing.Compactor); err != nil {
		ing.Logger.Error("starting the compactor; the bucket is not compacted by this ingester", "err", err)
		return func() {}
	}
	return func() { _ = services.StopAndAwaitTerminated(context.Background(), ing.Compactor) }
}

// uploadClock remembers when this ingester's blocks reached the bucket.
type uploadClock struct {
	mu sync.Mutex
	at map[ulid.ULID]time.Time
}

func (u *uploadClock) set(id ulid.ULID, t time.Time, forget time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.at == nil {
		u.at = map[ulid.ULID]time.Time{}
	}
	u.at[id] = t
	for k, v := range u.at {
		if time.Since(v) > forget {
			delete(u.at, k)
		}
	}
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
func (ing *Ingester) peerWindow() time.Duration { return 2*ing.Blocks.SyncInterval + 5*time.Second }

// peerSource is what this ingester answers a peer's query with: its heads,
// and its local blocks that the peer may not find in the bucket yet (not
// uploaded, or uploaded too recently for the peer's listing). Without the
// blocks, a profile would be invisible to a peer that is not its replica
// between the cut that dropped the head and the peer's next listing.
type peerSource struct{ ing *Ingester }

func (p peerSource) local() querier.Source {
	w := p.ing.peerWindow()
	return p.ing.LocalBlocks.View(func(m *block.Meta) bool { return p.ing.uploads.recent(m.ULID, w) })
}

func (p peerSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	out, err := storeSource(p).Select(ctx, tenant, ptype, match, start, end)
	if err != nil {
		return nil, err
	}
	more, err := p.local().Select(ctx, tenant, ptype, match, start, end)
	return append(out, more...), err
}

func (p peerSource) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	out, err := storeSource(p).SeriesLabels(ctx, tenant, match, start, end)
	if err != nil {
		return nil, err
	}
	more, err := p.local().SeriesLabels(ctx, tenant, match, start, end)
	return append(out, more...), err
}
