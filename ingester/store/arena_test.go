package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// TestArenasKeepNothing: the write paths decode every profile into a pooled
// arena that is reused once the push returns (pprofdec.Arena), so nothing
// the head keeps may point into a decoded profile. The same pushes (push.v1,
// /ingest pprof, replica appends, then a WAL replay) are made with arenas
// that are never reused (the reference) and with arenas poisoned on release
// and reused at once, sequentially and from concurrent clients; every head
// must hold exactly the reference's data: series labels, rows, and every
// stack resolved to its strings (a string kept from a released profile
// reads poison or another profile's bytes). Run with -race, a reference
// read while the arena is reused is also a data race.
func TestArenasKeepNothing(t *testing.T) {
	files := benchFiles(t)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	logger := slog.New(slog.DiscardHandler)
	const rounds, instances = 2, 3
	now := time.Now().UnixNano()

	type result struct {
		dump string
		dir  string
	}
	run := func(m pprofdec.ReleaseMode, clients int) result {
		pprofdec.SetReleaseMode(m)
		defer pprofdec.SetReleaseMode(pprofdec.ReleaseReuse)
		dir := t.TempDir()
		s, err := Open(Options{DataDir: dir, WALPolicy: wal.PolicyOff, Logger: logger}, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := push.NewHandler(benchLimits(), s, false, logger, nil)
		recv := distributor.NewInternalHandler(s, distributor.HandlerOptions{Logger: logger})
		type job struct{ round, file, inst int }
		jobs := make(chan job)
		errs := make(chan error, clients)
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					if err := pushVia(h, recv, names[j.file], files[names[j.file]], j.round, j.inst, now); err != nil {
						errs <- err
						for range jobs {
						}
						return
					}
				}
			}()
		}
		for round := range rounds {
			for i := range names {
				for inst := range instances {
					jobs <- job{round, i, inst}
				}
			}
		}
		close(jobs)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		d := dumpHead(t, s.Head())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return result{d, dir}
	}

	ref := run(pprofdec.ReleaseNever, 1)
	if !strings.Contains(ref.dump, "series") {
		t.Fatal("the reference head is empty")
	}
	for _, c := range []struct {
		name    string
		clients int
	}{{"sequential", 1}, {"concurrent", 4}} {
		got := run(pprofdec.ReleasePoison, c.clients)
		if got.dump != ref.dump {
			t.Fatalf("%s pushes with poisoned arenas: the head differs from the reference:\n%s", c.name, firstDiff(got.dump, ref.dump))
		}
		// Replay the WAL those pushes wrote, with poisoned arenas too.
		pprofdec.SetReleaseMode(pprofdec.ReleasePoison)
		s, err := Open(Options{DataDir: got.dir, WALPolicy: wal.PolicyOff, Logger: logger, ReplayWorkers: 2}, nil)
		pprofdec.SetReleaseMode(pprofdec.ReleaseReuse)
		if err != nil {
			t.Fatal(err)
		}
		replayed := dumpHead(t, s.Head())
		_ = s.Close()
		if replayed != ref.dump {
			t.Fatalf("%s: the head replayed with poisoned arenas differs from the reference:\n%s", c.name, firstDiff(replayed, ref.dump))
		}
	}
}

// pushVia pushes one corpus file to instance inst through one of the three
// write paths (push.v1, /ingest, a replica append), with a profile id fixed
// by (file, round, instance) so that every run stores the same rows.
func pushVia(h *push.Handler, recv http.Handler, name string, raw []byte, round, inst int, now int64) error {
	id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%d/%d", name, round, inst))
	switch (round + inst) % 3 {
	case 0:
		_, err := h.Push(context.Background(), connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "push/" + name}, {Name: "instance", Value: fmt.Sprint(inst)}},
			Samples: []*pushv1.RawSample{{RawProfile: raw, ID: id.String()}},
		}}}))
		return err
	case 1:
		// /ingest gives every profile a fresh id: one round of it only.
		if round > 0 {
			return nil
		}
		rec := httptest.NewRecorder()
		app := "ingest_" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, name)
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, fmt.Sprintf("/ingest?name=%s{instance=%d}&format=pprof", app, inst), bytes.NewReader(raw)))
		if rec.Code != http.StatusOK {
			return fmt.Errorf("/ingest %s: %d %s", name, rec.Code, rec.Body)
		}
		return nil
	default:
		labels := model.Labels{{Name: "__name__", Value: "replica"}, {Name: "instance", Value: fmt.Sprint(inst)}, {Name: "service_name", Value: "replica/" + name}}
		body := record.Encode("anonymous", []record.Entry{{ID: head.ProfileID(id), TimeNanos: now, Labels: labels, Raw: raw}})
		rec := httptest.NewRecorder()
		recv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, distributor.AppendPath, bytes.NewReader(body)))
		if rec.Code/100 != 2 {
			return fmt.Errorf("replica append %s: %d %s", name, rec.Code, rec.Body)
		}
		return nil
	}
}

// dumpHead renders a head independently of the order of its symbol ids:
// per tenant and series (sorted by labels), per row (sorted):
// the total and every sample's stack resolved to its strings.
func dumpHead(t *testing.T, h *head.Head) string {
	t.Helper()
	var out []string
	for _, tn := range h.Tenants() {
		sel := h.Tenant(tn).Select("", nil, math.MinInt64, math.MaxInt64)
		sy := sel.Symbols
		var stack []uint32
		stacks := map[uint32]string{} // resolved once per selection
		frame := func(loc uint32) string {
			l := sy.Locations[loc]
			m := sy.Mappings[l.Mapping]
			var b strings.Builder
			fmt.Fprintf(&b, "[%s %s %x %x %v", sy.Strings[m.Filename], sy.Strings[m.BuildID], l.Address, m.MemoryStart, l.IsFolded)
			for _, ln := range l.Lines {
				f := sy.Functions[ln.Function]
				fmt.Fprintf(&b, " %s|%s|%s:%d@%d", sy.Strings[f.Name], sy.Strings[f.SystemName], sy.Strings[f.Filename], f.StartLine, ln.Line)
			}
			b.WriteString("]")
			return b.String()
		}
		for _, s := range sel.Series {
			var rows []string
			for _, p := range s.Profiles {
				var samples []string
				err := head.DecodeSamples(p.Samples, func(st uint32, v int64) {
					str, ok := stacks[st]
					if !ok {
						stack = sy.Stack(stack[:0], st)
						var b strings.Builder
						for _, loc := range stack {
							b.WriteString(frame(loc))
						}
						str = b.String()
						stacks[st] = str
					}
					samples = append(samples, fmt.Sprintf("    %s = %d", str, v))
				})
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(samples)
				// Not the id: /ingest gives every profile a fresh one.
				rows = append(rows, fmt.Sprintf("  row at %d total %d\n%s", p.TimeNanos, p.Total, strings.Join(samples, "\n")))
			}
			slices.Sort(rows)
			out = append(out, fmt.Sprintf("tenant %s series %s\n%s", tn, s.Labels, strings.Join(rows, "\n")))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got  %.300s\n want %.300s", i, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}
