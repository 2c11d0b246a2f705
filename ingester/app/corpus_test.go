package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// stackKey names a sample's stack by what a reader sees: per location, leaf
// first, its address and its lines (function, file, line).
func stackKey(s *profile.Sample) string {
	var b strings.Builder
	for _, l := range s.Location {
		fmt.Fprintf(&b, "%x", l.Address)
		for _, ln := range l.Line {
			name, file := "", ""
			if ln.Function != nil {
				name, file = ln.Function.Name, ln.Function.Filename
			}
			// With -normalize.sanitize-invalid-utf8 the ingester stores invalid UTF-8 as U+FFFD (invalid_utf8.pb.gz); by default it refuses it, as Pyroscope does.
			fmt.Fprintf(&b, "|%s@%s:%d", strings.ToValidUTF8(name, "\uFFFD"), strings.ToValidUTF8(file, "\uFFFD"), ln.Line)
		}
		b.WriteByte(';')
	}
	return b.String()
}

// stackTotals sums sample type i per stack, leaving out zero totals.
func stackTotals(p *profile.Profile, i int) map[string]int64 {
	out := map[string]int64{}
	for _, s := range p.Sample {
		out[stackKey(s)] += s.Value[i]
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// TestCorpusMergeProfileExact pushes every corpus file under its own service
// and checks that SelectMergeProfile returns, for every sample type, exactly
// the per-stack totals github.com/google/pprof computes from the file.
func TestCorpusMergeProfileExact(t *testing.T) {
	files := testutil.Corpus(t)
	if files == nil {
		return
	}
	ing := startIngester(t)
	ctx := context.Background()
	now := time.Now()
	var exact, rejected, unparsable int
	for i, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			body := raw
			// Re-stamp to now so the age limit accepts it; files that do not
			// decode are pushed as they are and must be refused cleanly.
			if p, err := pprofdec.DecodePprof(raw, 0); err == nil {
				p.TimeNanos = now.Add(-time.Duration(i) * time.Millisecond).UnixNano()
				if body, err = p.MarshalVT(); err != nil {
					t.Fatal(err)
				}
			}
			_, err = ing.Push.Push(ctx, connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
				Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: name}},
				Samples: []*pushv1.RawSample{{RawProfile: body, ID: uuid.NewString()}},
			}}}))
			if err != nil {
				if connectCode(err) != connect.CodeInvalidArgument {
					t.Fatalf("push: want a clean InvalidArgument or success, got %v", err)
				}
				t.Logf("rejected cleanly: %v", err)
				rejected++
				return
			}
			// What Pyroscope stores, and so Hearth: a Go profile gets the Go
			// repairs (type parameters dropped, truncated stacks completed).
			wantRaw := raw
			if gp, err := pprofdec.DecodePprof(raw, 0); err == nil && normalize.Language("", gp) == "go" && normalize.FixGo(gp, normalize.Default()) {
				if wantRaw, err = gp.MarshalVT(); err != nil {
					t.Fatal(err)
				}
			}
			want, perr := profile.ParseData(wantRaw)
			if perr != nil {
				// google/pprof cannot parse it (dotnet-pprof-3): compare with our own decode instead.
				unparsable++
				t.Logf("github.com/google/pprof cannot parse this file (%v): comparing with the vtproto decode", perr)
				gp, err := pprofdec.DecodePprof(raw, 0)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := gp.MarshalVT()
				if want, perr = profile.ParseData(b); perr != nil {
					t.Skipf("neither decoder agrees on this file: %v", perr)
				}
			}
			series, err := ing.Querier.Series(ctx, connect.NewRequest(&querierv1.SeriesRequest{
				Matchers: []string{fmt.Sprintf(`{service_name=%q}`, name)}, LabelNames: []string{"__profile_type__"},
				Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
			}))
			if err != nil {
				t.Fatal(err)
			}
			types := map[string]string{} // sample type → profile type id
			for _, ls := range series.Msg.LabelsSet {
				id := ls.Labels[0].Value
				types[strings.Split(id, ":")[1]] = id
			}
			if len(types) != len(want.SampleType) {
				t.Fatalf("got profile types %v for %d sample types", types, len(want.SampleType))
			}
			for si, st := range want.SampleType {
				id, ok := types[st.Type]
				if !ok {
					t.Fatalf("no profile type for sample type %q: %v", st.Type, types)
				}
				//lint:ignore SA1019 querier.v1 serves it: Grafana and profilecli call it
				resp, err := ing.Querier.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{
					ProfileTypeID: id, LabelSelector: fmt.Sprintf(`{service_name=%q}`, name),
					Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
				}))
				if err != nil {
					t.Fatal(err)
				}
				gotBytes, err := resp.Msg.MarshalVT()
				if err != nil {
					t.Fatal(err)
				}
				got, err := profile.ParseData(gotBytes)
				if err != nil {
					t.Fatalf("merged profile does not parse: %v", err)
				}
				if err := got.CheckValid(); err != nil {
					t.Fatalf("merged profile is not valid pprof: %v", err)
				}
				wantTotals, gotTotals := stackTotals(want, si), stackTotals(got, 0)
				var sum int64
				for k, v := range wantTotals {
					sum += v
					if gotTotals[k] != v {
						t.Errorf("%s: stack %.200s: got %d, want %d", st.Type, k, gotTotals[k], v)
					}
				}
				for k, v := range gotTotals {
					if _, ok := wantTotals[k]; !ok {
						t.Errorf("%s: unexpected stack %.200s = %d", st.Type, k, v)
					}
				}
				// The flame graph of the same selection carries the same total.
				fg, err := ing.Querier.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
					ProfileTypeID: id, LabelSelector: fmt.Sprintf(`{service_name=%q}`, name),
					Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
				}))
				if err != nil {
					t.Fatal(err)
				}
				if fg.Msg.Flamegraph.Total != sum {
					t.Errorf("%s: flame graph total %d, want %d", st.Type, fg.Msg.Flamegraph.Total, sum)
				}
			}
			if !t.Failed() {
				exact++
			}
		})
	}
	t.Logf("corpus: %d files, %d exact for every sample type, %d rejected cleanly (%d compared against our own decode)", len(files), exact, rejected, unparsable)
	if exact+rejected != len(files) {
		t.Errorf("%d files neither exact nor cleanly rejected", len(files)-exact-rejected)
	}
	if exact < len(files)-2 {
		t.Errorf("only %d of %d files are stored exactly", exact, len(files))
	}
}
