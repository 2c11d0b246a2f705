package querier

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// randomProfile is a one-type CPU profile with up to 40 samples drawn from
// 60 stacks over 10 functions.
func randomProfile(rng *rand.Rand) *googlev1.Profile {
	pool := rand.New(rand.NewPCG(1, 2))
	stacks := make([][]uint64, 60)
	for i := range stacks {
		for d := 1 + pool.IntN(5); d > 0; d-- {
			stacks[i] = append(stacks[i], uint64(1+pool.IntN(10)))
		}
	}
	p := &googlev1.Profile{StringTable: []string{"", "cpu", "nanoseconds"}}
	p.SampleType = []*googlev1.ValueType{{Type: 1, Unit: 2}}
	p.PeriodType = &googlev1.ValueType{Type: 1, Unit: 2}
	for f := 1; f <= 10; f++ {
		p.Function = append(p.Function, &googlev1.Function{Id: uint64(f), Name: int64(len(p.StringTable))})
		p.StringTable = append(p.StringTable, fmt.Sprintf("fn%d", f))
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(f), Line: []*googlev1.Line{{FunctionId: uint64(f)}}})
	}
	for s := 1 + rng.IntN(40); s > 0; s-- {
		sm := &googlev1.Sample{Value: []int64{rng.Int64N(2000) - 200}, LocationId: stacks[rng.IntN(len(stacks))]}
		p.Sample = append(p.Sample, sm)
	}
	return p
}

func withoutAggregates(sels []head.Selection) []head.Selection {
	out := make([]head.Selection, len(sels))
	for i, sel := range sels {
		out[i] = head.Selection{Symbols: sel.Symbols}
		for _, sr := range sel.Series {
			out[i].Series = append(out[i].Series, head.SeriesRows{Labels: sr.Labels, Profiles: sr.Profiles})
		}
	}
	return out
}

// unpacked is withoutAggregates with every row's samples unpacked (a lazy
// head selection leaves the rows an aggregate covers packed).
func unpacked(sels []head.Selection) []head.Selection {
	out := make([]head.Selection, len(sels))
	for i, sel := range sels {
		out[i] = head.Selection{Symbols: sel.Symbols}
		for _, sr := range sel.Series {
			out[i].Series = append(out[i].Series, head.SeriesRows{Labels: sr.Labels, Profiles: sr.Unpacked(0, len(sr.Profiles))})
		}
	}
	return out
}

func merged(t *testing.T, sels []head.Selection, ids []head.ProfileID) [][2][]int64 {
	t.Helper()
	sv, err := mergeStacks(sels, newRowFilter(ids))
	if err != nil {
		t.Fatal(err)
	}
	var out [][2][]int64
	for _, s := range sv {
		st := make([]int64, len(s.stacks))
		for i, v := range s.stacks {
			st[i] = int64(v)
		}
		out = append(out, [2][]int64{st, s.values})
	}
	return out
}

// TestMergeAggregatesExact: merging through the head's per-chunk aggregates
// gives exactly the sums of merging every row, whatever the time range, the
// profile id selector, and rows already counted from another source.
func TestMergeAggregatesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	h := head.New(head.Options{})
	var ids []head.ProfileID
	const n = 5*head.AggregateRows + 7
	for i := 0; i < n; i++ {
		for s, svc := range []string{"a", "b"} {
			var id head.ProfileID
			id[0], id[1], id[2] = byte(i), byte(i>>8), byte(s)
			ts := int64(1000 + i*10)
			if svc == "b" && i%5 == 3 {
				ts = int64(1000 + (n-i)*10) // out of time order
			}
			ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: svc}}.Sort()
			if _, err := h.Append("t", id, ls, randomProfile(rng), ts); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	th := h.Tenant("t")
	full := th.Select("", nil, math.MinInt64, math.MaxInt64)
	aggs := 0
	for _, sr := range full.Series {
		aggs += len(sr.Aggregates)
	}
	if aggs == 0 {
		t.Fatal("no aggregates in a full-range selection")
	}
	check := func(name string, sels []head.Selection, ids []head.ProfileID) {
		t.Helper()
		got, want := merged(t, sels, ids), merged(t, withoutAggregates(sels), ids)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: merge through aggregates differs from the rows' merge", name)
		}
	}
	// The head packs rows: a lazy selection leaves those an aggregate
	// covers packed, and must merge to the same sums.
	checkLazy := func(name string, lazy, eager []head.Selection, ids []head.ProfileID) {
		t.Helper()
		got, want := merged(t, lazy, ids), merged(t, withoutAggregates(eager), ids)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: merge of the lazy selection differs from the rows' merge", name)
		}
		if got := merged(t, unpacked(lazy), ids); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the lazy selection's unpacked rows merge differently", name)
		}
	}
	packed := 0
	for _, sr := range th.SelectLazy("", nil, math.MinInt64, math.MaxInt64).Series {
		for _, p := range sr.Profiles {
			if p.Samples == nil {
				packed++
			}
		}
	}
	if packed == 0 {
		t.Fatal("a lazy selection unpacked every row")
	}
	for _, r := range [][2]int64{{math.MinInt64, math.MaxInt64}, {1000, 1000 + 40*10}, {1000 + 33*10, 1000 + 150*10}, {1005, 2000}, {0, 1000}} {
		sel := th.Select("", nil, r[0], r[1])
		check(fmt.Sprintf("range %v", r), []head.Selection{sel}, nil)
		check(fmt.Sprintf("range %v, the head twice", r), []head.Selection{sel, sel}, nil)
		check(fmt.Sprintf("range %v, ids", r), []head.Selection{sel}, ids[10:90])
		lazy := th.SelectLazy("", nil, r[0], r[1])
		checkLazy(fmt.Sprintf("lazy, range %v", r), []head.Selection{lazy}, []head.Selection{sel}, nil)
		checkLazy(fmt.Sprintf("lazy, range %v, the head twice", r), []head.Selection{lazy, lazy}, []head.Selection{sel, sel}, nil)
		checkLazy(fmt.Sprintf("lazy, range %v, ids", r), []head.Selection{lazy}, []head.Selection{sel}, ids[10:90])
	}
	// One row of chunk 1 already counted from another source: that chunk
	// falls back to its rows, the others still use their aggregates.
	sr := full.Series[0]
	one := head.Selection{Symbols: full.Symbols, Series: []head.SeriesRows{{Labels: sr.Labels, Profiles: sr.Profiles[head.AggregateRows+3 : head.AggregateRows+4]}}}
	check("a row seen before", []head.Selection{one, full}, nil)
	checkLazy("lazy, a row seen before", []head.Selection{one, th.SelectLazy("", nil, math.MinInt64, math.MaxInt64)}, []head.Selection{one, full}, nil)
	// Filtered rows no longer match their aggregates.
	cut := head.Selection{Symbols: full.Symbols, Series: []head.SeriesRows{{Labels: sr.Labels, Profiles: append(append([]head.Profile(nil), sr.Profiles[:5]...), sr.Profiles[6:]...), Aggregates: sr.Aggregates}}}
	for _, a := range cut.Series[0].Aggregates {
		if a.First == 0 && a.Valid(cut.Series[0].Profiles) {
			t.Fatal("an aggregate is valid over rows it was not merged from")
		}
	}
	got := merged(t, []head.Selection{cut}, nil)
	want := merged(t, withoutAggregates([]head.Selection{cut}), nil)
	if !reflect.DeepEqual(got, want) {
		t.Fatal("filtered rows: merge through stale aggregates")
	}
}

// TestMergeAggregatesConcurrent: appends that complete chunks while queries
// merge the same series (run with -race); every merge equals the merge of
// the rows it selected.
func TestMergeAggregatesConcurrent(t *testing.T) {
	h := head.New(head.Options{})
	ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "a"}}.Sort()
	const writers, per = 4, 3 * head.AggregateRows
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < per; i++ {
				var id head.ProfileID
				id[0], id[1], id[2] = byte(i), byte(i>>8), byte(w)
				if _, err := h.Append("t", id, ls, randomProfile(rng), int64(1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	for finished := 0; finished < writers; {
		select {
		case <-done:
			finished++
		default:
		}
		if th := h.Tenant("t"); th != nil {
			sel := []head.Selection{th.Select("", nil, math.MinInt64, math.MaxInt64)}
			if got, want := merged(t, sel, nil), merged(t, withoutAggregates(sel), nil); !reflect.DeepEqual(got, want) {
				t.Fatal("a merge during appends differs from the rows' merge")
			}
			lazy := []head.Selection{th.SelectLazy("", nil, math.MinInt64, math.MaxInt64)}
			if got, want := merged(t, lazy, nil), merged(t, unpacked(lazy), nil); !reflect.DeepEqual(got, want) {
				t.Fatal("a lazy merge during appends differs from the rows' merge")
			}
		}
	}
	sel := h.Tenant("t").Select("", nil, math.MinInt64, math.MaxInt64)
	if n := len(sel.Series[0].Aggregates); n != writers*per/head.AggregateRows {
		t.Fatalf("%d aggregates, want %d", n, writers*per/head.AggregateRows)
	}
}

// TestFlameGraphStackNodes: naming each symbol-tree node once builds the same
// name tree, node for node, as adding every stack's frames from the root.
func TestFlameGraphStackNodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	h := head.New(head.Options{})
	ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "a"}}.Sort()
	for i := 0; i < 50; i++ {
		if _, err := h.Append("t", head.ProfileID{byte(i)}, ls, randomProfile(rng), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	sv, err := mergeStacks([]head.Selection{h.Tenant("t").Select("", nil, math.MinInt64, math.MaxInt64)}, newRowFilter(nil))
	if err != nil {
		t.Fatal(err)
	}
	byFrames, byNodes := newNameTree(), newNameTree()
	var locs []uint32
	var fr []string
	sn := newStackNodes(byNodes, sv[0].syms)
	for i, st := range sv[0].stacks {
		locs = sv[0].syms.Stack(locs[:0], st)
		fr = frames(fr[:0], sv[0].syms, locs)
		byFrames.add(fr, sv[0].values[i])
		sn.add(st, sv[0].values[i])
	}
	if !reflect.DeepEqual(byFrames.nodes, byNodes.nodes) || !reflect.DeepEqual(byFrames.names, byNodes.names) {
		t.Fatal("the name trees differ")
	}
	for _, max := range []int{0, 5} {
		if !reflect.DeepEqual(byFrames.flameGraph(max), byNodes.flameGraph(max)) {
			t.Fatalf("flame graphs (max nodes %d) differ", max)
		}
	}
}
