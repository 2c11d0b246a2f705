package store

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestDropTenant: after DropTenant the tenant's rows are gone from the head,
// its writes are refused, and a restart does not replay its WAL records,
// while the other tenant's profiles are all there (in the cut's block or
// replayed); Undelete accepts its writes again.
func TestDropTenant(t *testing.T) {
	var raw []byte
	for _, b := range benchFiles(t) {
		raw = b
		break
	}
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	written := map[string]int{} // tenant → blocks written
	opts := Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: logger,
		WriteBlock: func(d, tn string, sel head.Selection) (string, error) {
			written[tn]++
			id := uuid.NewString()
			return id, os.MkdirAll(filepath.Join(d, id), 0o755)
		}}
	s, err := Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := push.NewHandler(benchLimits(), s, true, logger, nil)
	pushTo := func(tn string) error {
		req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "svc"}},
			Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
		}}})
		req.Header().Set(tenant.Header, tn)
		_, err := h.Push(context.Background(), req)
		return err
	}
	for range 5 {
		for _, tn := range []string{"gone", "kept"} {
			if err := pushTo(tn); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.DropTenant(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if s.Head().Tenant("gone") != nil || !s.Deleting("gone") {
		t.Fatal("the tenant is still in the head, or its writes are not refused")
	}
	if written["gone"] != 0 || written["kept"] != 1 {
		t.Fatalf("blocks written by the drop's cut: %v, want kept's only", written)
	}
	var td *TenantDeletedError
	if err := pushTo("gone"); !errors.As(err, &td) || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("push of a tenant being deleted: %v", err)
	}
	if err := pushTo("kept"); err != nil { // after the drop: replayed
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Head().Tenant("gone") != nil {
		t.Fatal("the restart replayed the dropped tenant's WAL records")
	}
	kept := s.Head().Tenant("kept")
	if kept == nil {
		t.Fatal("the other tenant's push after the drop was not replayed")
	}
	if n := len(kept.Select("", nil, math.MinInt64, math.MaxInt64).Series); n == 0 {
		t.Fatal("no series of the other tenant replayed")
	}
	if st := kept.Stats(); st.Profiles == 0 {
		t.Fatal("no profile of the other tenant replayed")
	}
	// A fresh process accepts until told (the app's watcher drops it again);
	// Undelete is the finished deletion.
	s.Undelete("gone")
	h = push.NewHandler(benchLimits(), s, true, logger, nil)
	if err := pushTo("gone"); err != nil {
		t.Fatalf("a push after the deletion finished: %v", err)
	}
}
