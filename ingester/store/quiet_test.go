package store

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestWaitQuiet: while pushes keep arriving the store is not quiet; once they
// stop, WaitQuiet returns true, and only after the last push returned.
func TestWaitQuiet(t *testing.T) {
	var raw []byte
	for _, b := range benchFiles(t) {
		raw = b
		break
	}
	logger := slog.New(slog.DiscardHandler)
	s, err := Open(Options{DataDir: t.TempDir(), WALPolicy: wal.PolicyOff, Logger: logger}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := push.NewHandler(benchLimits(), s, true, logger, nil)
	pushOne := func() error {
		req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}},
			Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
		}}})
		req.Header().Set(tenant.Header, "t")
		_, err := h.Push(context.Background(), req)
		return err
	}

	stop := make(chan struct{})
	var lastReturned atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100_000; i++ { // bounded; stopped long before
			select {
			case <-stop:
				return
			default:
			}
			if err := pushOne(); err != nil {
				t.Error(err)
				return
			}
			lastReturned.Store(time.Now().UnixNano())
		}
	}()
	for i := 0; lastReturned.Load() == 0 && i < 3000; i++ { // the first push is in
		time.Sleep(10 * time.Millisecond)
	}
	// Pushes arrive back to back: never 10 s without one.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	quiet := s.WaitQuiet(ctx, 10*time.Second)
	cancel()
	if quiet {
		t.Fatal("WaitQuiet reported quiet while pushes kept arriving")
	}
	close(stop)
	<-done
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !s.WaitQuiet(ctx, 50*time.Millisecond) {
		t.Fatal("WaitQuiet did not report quiet after the pushes stopped")
	}
	if since := time.Since(time.Unix(0, lastReturned.Load())); since < 50*time.Millisecond {
		t.Fatalf("WaitQuiet returned %v after the last push, want at least the quiet period", since)
	}
}
