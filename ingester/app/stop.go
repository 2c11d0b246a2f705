package app

import (
	"context"
	"fmt"
	"time"

	"github.com/grafana/dskit/services"
)

// stop is the ingester module's stopping: the stop sequence, run before any
// other module stops. After it the module graph stops the ring (LEAVING kept,
// or unregistered after a successful final flush), the store (refuse writes,
// sync and close the WAL), the shipper and the servers.
func (a *App) stop(error) error {
	if a.final.Load() {
		return a.finalStop()
	}
	a.restartStop()
	return nil
}

// restartStop is a normal stop (SIGTERM: a rollout's restart). The tokens and
// the WAL stay: the next start owns the same series and replays everything.
func (a *App) restartStop() {
	start := time.Now()
	a.leave()               // LEAVING, and wait until the peers route writes elsewhere
	a.serveOn(start)        // -shutdown-delay: clients move away
	a.drain()               // close the ports after the requests in flight, finish replica writes
	a.writeHeadIfWALLarge() // -ingester.flush-on-stop-wal-bytes
}

// finalStop is a final stop (scale-down: the prepare-shutdown marker, or
// POST /ingester/shutdown): after it nothing of this ingester is needed to
// answer a query, and it leaves the ring for good.
func (a *App) finalStop() error {
	start := time.Now()
	a.leave()
	a.waitWritesRouted()
	// No write may be acknowledged after the last flush: the others skip a
	// LEAVING member, and what still arrives here is refused (another replica
	// takes it).
	a.Store.StopWrites()
	err := a.flushAndUpload()
	if err == nil {
		a.Ring.UnregisterOnStop() // else keep the tokens and the WAL: a restart brings it all back
	}
	a.serveOn(start)
	a.drain()
	return err
}

// leave moves this ingester to LEAVING and keeps taking writes until every
// peer routes them elsewhere: one refused here could fail its quorum.
func (a *App) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Ring.SetLeaving(ctx); err != nil {
		a.Logger.Warn("moving to LEAVING", "err", err)
		return
	}
	t0 := time.Now()
	pending := a.Ring.WaitSeenLeaving(ctx, a.Config.Ingester.LeavePropagationTimeout)
	a.Logger.Info("peers see this ingester LEAVING", "seconds", time.Since(t0).Seconds(), "not_confirmed", len(pending))
}

// waitWritesRouted lets the pushes routed here before the peers saw LEAVING
// land before writes are refused: a refusal could fail their quorum (with RF 2
// every replica must store a profile). Bounded: a peer that never saw LEAVING
// keeps sending, and those pushes are refused after the bound.
func (a *App) waitWritesRouted() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !a.Store.WaitQuiet(ctx, 300*time.Millisecond) {
		a.Logger.Warn("writes still arrive after LEAVING; refusing them from now on (another replica takes them)")
	}
}

// serveOn serves until -shutdown-delay after the stop began, so that clients
// stop sending here (their endpoints dropped this pod when its deletion
// began); what arrives is forwarded to the ACTIVE replicas.
func (a *App) serveOn(start time.Time) {
	if d := a.Config.ShutdownDelay - time.Since(start); d > 0 {
		a.Logger.Info("serving on before closing the port (-shutdown-delay)", "seconds", d.Seconds())
		time.Sleep(d)
	}
}

// drain closes the ports once the requests in flight are answered, then
// waits for the replica writes still running after their push returned.
func (a *App) drain() {
	for _, s := range a.servers {
		if err := s.Drain(); err != nil {
			a.Logger.Warn("stopping the HTTP server", "err", err)
		}
	}
	a.Distributor.Drain()
}

// writeHeadIfWALLarge writes the head into local blocks on a normal stop when
// the next start would otherwise replay more WAL than
// -ingester.flush-on-stop-wal-bytes: a head is written several times faster
// than its WAL is replayed (the WAL repeats every profile's symbols). The
// blocks are uploaded after the start.
func (a *App) writeHeadIfWALLarge() {
	lim := int64(a.Config.Ingester.FlushOnStopWALBytes)
	if lim <= 0 || a.Store.State() != services.Running {
		return
	}
	n := a.Store.ReplayBytes()
	if n <= lim {
		return
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), a.Config.Ingester.FinalFlushTimeout)
	defer cancel()
	if err := a.Store.Cut(ctx, "stop"); err != nil {
		a.Logger.Warn("writing the head on stop failed; the next start replays the WAL", "wal_bytes", n, "err", err)
		return
	}
	a.Logger.Info("head written into local blocks so that the next start need not replay the WAL",
		"wal_bytes", n, "seconds", time.Since(t0).Seconds())
}

// flushAndUpload cuts everything into blocks and uploads them.
func (a *App) flushAndUpload() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.Config.Ingester.FinalFlushTimeout)
	defer cancel()
	a.Logger.Info("final stop: flushing and uploading everything before leaving the ring")
	if err := a.Store.Cut(ctx, "shutdown"); err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	if err := a.Shipper.Flush(ctx); err != nil {
		return fmt.Errorf("final upload: %w", err)
	}
	return nil
}
