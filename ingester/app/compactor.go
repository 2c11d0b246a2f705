package app

import (
	"context"
	"path/filepath"

	"github.com/grafana/dskit/services"

	"github.com/hearth-dev/hearth/ingester/compactor"
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
