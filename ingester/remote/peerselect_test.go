package remote

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// TestPeerSelectMatchesEager: a peer's select, answered from packed rows one
// series at a time, decodes to exactly what the eager path (every row
// unpacked into a copy, pruned into another, compressed at once) answered on
// the same head: same series, rows, samples bytes and pruned symbols.
func TestPeerSelectMatchesEager(t *testing.T) {
	const rounds = 3*head.PackRows + 5 // three packed blocks and an unpacked tail per series
	st := roundsStore(t, rounds)
	th := st.Head().Tenant("anonymous")
	packed := 0
	for _, sr := range th.SelectPacked("", nil, math.MinInt64, math.MaxInt64).Series {
		for _, p := range sr.Profiles {
			if p.Samples == nil {
				packed++
			}
		}
	}
	if packed == 0 {
		t.Fatal("no packed rows: the test would not read any")
	}
	h := NewSelectHandler(st, HandlerOptions{Logger: discard})
	// The rows' times are seriesRounds': first + r*10s.
	first := th.Stats().MinTime
	at := func(r int) int64 { return first + int64(r)*int64(10*time.Second) }
	for _, tc := range []struct {
		name string
		req  Request
	}{
		{"all", Request{Start: math.MinInt64, End: math.MaxInt64}},
		{"rows 3-13 (mid-block)", Request{Start: at(3), End: at(13)}},
		{"tail only", Request{Start: at(3*head.PackRows + 1), End: math.MaxInt64}},
		{"one service", Request{Start: math.MinInt64, End: math.MaxInt64, Selectors: []string{`{service_name="svc-1"}`}}},
		{"one type", Request{ProfileType: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", Start: math.MinInt64, End: math.MaxInt64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Tenant = "anonymous"
			got, err := DecodeSelections(serveSelect(t, h, tc.req), 0)
			if err != nil {
				t.Fatal(err)
			}
			match, err := querier.Matcher(tc.req.Selectors...)
			if err != nil {
				t.Fatal(err)
			}
			eager, err := st.Select(context.Background(), "anonymous", tc.req.ProfileType, match, tc.req.Start, tc.req.End)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := encodeSelectionsReference(eager)
			if err != nil {
				t.Fatal(err)
			}
			want, err := DecodeSelections(ref, 0)
			if err != nil {
				t.Fatal(err)
			}
			var nrows int
			for _, sel := range want {
				for _, sr := range sel.Series {
					nrows += len(sr.Profiles)
				}
			}
			if nrows == 0 {
				t.Fatal("the reference selected no rows")
			}
			if len(got) != len(want) {
				t.Fatalf("%d selections, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i].Series, want[i].Series) {
					t.Errorf("selection %d: series or rows differ from the eager answer", i)
				}
				if !reflect.DeepEqual(got[i].Symbols, want[i].Symbols) {
					t.Errorf("selection %d: symbols differ from the eager answer", i)
				}
			}
			// And through the querier: the same totals.
			if fmt.Sprint(mustTotals(t, staticSource(got))) != fmt.Sprint(mustTotals(t, staticSource(want))) {
				t.Error("totals differ from the eager answer")
			}
			t.Logf("%d rows", nrows)
		})
	}
}

func mustTotals(t *testing.T, src querier.Source) map[string]int64 {
	t.Helper()
	m, err := totals(t, src)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
