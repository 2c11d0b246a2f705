package block

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/selector"
)

func matcherOf(t testing.TB, sel string) func(model.Labels) bool {
	if sel == "" {
		return nil
	}
	ms, err := selector.Parse(sel)
	if err != nil {
		t.Fatal(err)
	}
	return func(ls model.Labels) bool {
		for _, m := range ms {
			if !m.Matches(ls.Get(m.Name)) {
				return false
			}
		}
		return true
	}
}

func profileTypes(sels ...[]model.Labels) []string {
	set := map[string]bool{"": true}
	for _, ls := range sels {
		for _, l := range ls {
			set[l.Get(model.LabelProfileType)] = true
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// compareHeadBlock checks Select and SeriesLabels of the block against the head
// for every profile type, several selectors and time ranges.
func compareHeadBlock(t *testing.T, th *head.Tenant, r *Reader, selectors []string, minT, maxT int64) int {
	t.Helper()
	ctx := context.Background()
	mid := minT + (maxT-minT)/2
	ranges := [][2]int64{{-1 << 63, 1<<63 - 1}, {minT, maxT}, {minT, mid}, {mid, maxT}, {mid, mid}, {maxT + 1, maxT + 10}, {minT - 10, minT - 1}}
	checked := 0
	for _, pt := range profileTypes(th.SeriesLabels(nil, -1<<63, 1<<63-1)) {
		for si, s := range selectors {
			match := matcherOf(t, s)
			for ri, rg := range ranges {
				if pt != "" && (si+ri)%3 != 0 {
					continue // every selector and range for all types; a third of them per type
				}
				want := flatten(t, th.Select(pt, match, rg[0], rg[1]))
				sel, err := r.Select(ctx, pt, match, rg[0], rg[1])
				if err != nil {
					t.Fatalf("select %q %s %v: %v", pt, s, rg, err)
				}
				got := flatten(t, sel)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("select %q %s %v: block differs from head:\n got %d series\nwant %d series", pt, s, rg, len(got), len(want))
				}
				wl, gl := labelStrings(th.SeriesLabels(match, rg[0], rg[1])), labelStrings(r.SeriesLabels(match, rg[0], rg[1]))
				if !reflect.DeepEqual(wl, gl) {
					t.Fatalf("series labels %s %v: got %v, want %v", s, rg, gl, wl)
				}
				for _, rows := range want {
					checked += len(rows)
				}
			}
		}
	}
	return checked
}

func labelStrings(ls []model.Labels) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	sort.Strings(out)
	return out
}

func TestRoundTripCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	if corpus == nil {
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	h := head.New(head.Options{})
	const base = int64(1_700_000_000_000_000_000)
	pushLoad(t, h, corpus, 2*len(corpus), 5, base, 10e9, rng)
	root := t.TempDir()
	m := writeTenant(t, h, root, WriteOptions{Source: "test", RowGroupRows: 7})
	st := h.Tenant(testTenant).Stats()
	if m.Stats.Profiles != st.Profiles || m.Stats.Series != st.Series || m.Stats.Samples != st.Samples {
		t.Fatalf("meta stats %+v, head %+v", m.Stats, st)
	}
	if m.MinTime != st.MinTime || m.MaxTime != st.MaxTime {
		t.Fatalf("meta time [%d,%d], head [%d,%d]", m.MinTime, m.MaxTime, st.MinTime, st.MaxTime)
	}
	r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.openProfiles()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); int64(n) < m.Stats.Profiles/7 {
		t.Fatalf("%d row groups for %d rows of at most 7", n, m.Stats.Profiles)
	}
	sels := []string{"", `{service_name="cpu"}`, `{instance=~"i-[13]"}`, `{service_name!="heap", instance="i-0"}`, `{service_name="nope"}`}
	n := compareHeadBlock(t, h.Tenant(testTenant), r, sels, st.MinTime, st.MaxTime)
	if n == 0 {
		t.Fatal("nothing compared")
	}
	t.Logf("%d rows compared over %d series, %d row groups", n, m.Stats.Series, len(f.RowGroups()))
}

// TestRoundTripRandom is a property test over random heads of synthetic
// profiles (with sample labels, so a push splits into several series), some
// pushes refused by the series limit after their symbols were interned, so
// the writer prunes symbols and renumbers stacks.
func TestRoundTripRandom(t *testing.T) {
	for seed := uint64(0); seed < 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			limit := 4 + rng.IntN(20)
			h := head.New(head.Options{MaxSeriesPerTenant: limit})
			pushes := 1 + rng.IntN(60)
			refused := 0
			for i := 0; i < pushes; i++ {
				label := ""
				if rng.IntN(3) == 0 {
					label = fmt.Sprintf("v%d", rng.IntN(3))
				}
				p := synthetic(rng, 1+rng.IntN(40), label)
				ls := model.Labels{
					{Name: model.LabelServiceName, Value: fmt.Sprintf("svc%d", rng.IntN(4))},
					{Name: model.LabelProfileName, Value: "process_cpu"},
					{Name: "pod", Value: fmt.Sprintf("p%d", rng.IntN(5))},
				}.Sort()
				var id head.ProfileID
				for j := range id {
					id[j] = byte(rng.IntN(256))
				}
				ts := int64(1e18) + rng.Int64N(1e12)
				if _, err := h.Append(testTenant, id, ls, p, ts); err != nil {
					refused++
				}
			}
			th := h.Tenant(testTenant)
			st := th.Stats()
			if st.Profiles == 0 {
				return
			}
			root := t.TempDir()
			m := writeTenant(t, h, root, WriteOptions{RowGroupRows: 1 + rng.IntN(10), RowGroupBytes: 1 + rng.IntN(4096)})
			r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+m.ULID.String(), ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sels := []string{"", `{service_name="svc1"}`, `{pod=~"p[0-2]"}`, `{lbl="v1"}`, `{lbl=""}`}
			compareHeadBlock(t, th, r, sels, st.MinTime, st.MaxTime)
			if refused > 0 {
				syms, err := r.Symbols(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("refused %d pushes; nodes head %d block %d", refused, len(th.Select("", nil, -1<<63, 1<<63-1).Symbols.Nodes), len(syms.Nodes))
			}
		})
	}
}

func TestPruneRenumbers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	h := head.New(head.Options{MaxSeriesPerTenant: 2})
	ok := func(svc string, p any) {}
	_ = ok
	a := synthetic(rng, 10, "")
	if _, err := h.Append(testTenant, head.ProfileID{1}, model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "a"}}.Sort(), a, 1); err != nil {
		t.Fatal(err)
	}
	// A refused push still interns its symbols (a different binary).
	b := synthetic(rng, 30, "")
	b.StringTable[6] = "/bin/other"
	for _, f := range b.Function {
		b.StringTable[f.Name] += "_other"
	}
	if _, err := h.Append(testTenant, head.ProfileID{2}, model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "b"}}.Sort(), b, 2); err == nil {
		t.Fatal("expected the series limit to refuse the push")
	}
	th := h.Tenant(testTenant)
	full := th.Select("", nil, -1<<63, 1<<63-1)
	root := t.TempDir()
	m := writeTenant(t, h, root, WriteOptions{})
	r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+m.ULID.String(), ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	syms, err := r.Symbols(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(syms.Nodes) >= len(full.Symbols.Nodes) || len(syms.Strings) >= len(full.Symbols.Strings) || len(syms.Functions) >= len(full.Symbols.Functions) {
		t.Fatalf("nothing pruned: nodes %d/%d strings %d/%d functions %d/%d", len(syms.Nodes), len(full.Symbols.Nodes),
			len(syms.Strings), len(full.Symbols.Strings), len(syms.Functions), len(full.Symbols.Functions))
	}
	for _, s := range syms.Strings {
		if s == "/bin/other" {
			t.Fatal("string of the refused push survived pruning")
		}
	}
	compareHeadBlock(t, th, r, []string{""}, 1, 2)
}

func TestWriteLeavesNoTemp(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	h := head.New(head.Options{})
	if _, err := h.Append(testTenant, head.ProfileID{1}, model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "a"}}.Sort(), synthetic(rng, 5, ""), 5); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	m := writeTenant(t, h, root, WriteOptions{})
	ents, err := os.ReadDir(filepath.Join(root, testTenant))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != m.ULID.String() {
		t.Fatalf("tenant dir holds %v", ents)
	}
	files, _ := os.ReadDir(filepath.Join(root, testTenant, m.ULID.String()))
	if len(files) != 4 {
		t.Fatalf("block holds %d files", len(files))
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(root, testTenant, m.ULID.String(), f.Name))
		if err != nil || st.Size() != f.Size {
			t.Fatalf("%s: meta says %d bytes, disk %v %v", f.Name, f.Size, st, err)
		}
	}
	if _, err := Write(root, head.Selection{Symbols: h.Tenant(testTenant).Select("", nil, 0, 0).Symbols}, WriteOptions{Tenant: "x"}); err != ErrEmpty {
		t.Fatalf("empty selection: %v", err)
	}
}

// TestWritePackedSelection: the block written from a SelectPacked selection
// (packed rows unpacked one series at a time, as the cut writes) is byte for
// byte the block written from Select, with and without renumbered stacks.
func TestWritePackedSelection(t *testing.T) {
	for _, limit := range []int{0, 3} {
		rng := rand.New(rand.NewPCG(uint64(limit), 5))
		h := head.New(head.Options{MaxSeriesPerTenant: limit})
		for i := 0; i < 5*head.AggregateRows+head.PackRows+3; i++ {
			svc := fmt.Sprintf("svc%d", rng.IntN(4)) // with limit 3, pushes of a 4th series are refused
			ls := model.Labels{{Name: model.LabelServiceName, Value: svc}, {Name: model.LabelProfileName, Value: "process_cpu"}}.Sort()
			_, _ = h.Append(testTenant, head.ProfileID{byte(i), byte(i >> 8)}, ls, synthetic(rng, 1+rng.IntN(40), ""), int64(1e18)+int64(i)*1e9)
		}
		th := h.Tenant(testTenant)
		packed := th.SelectPacked("", nil, -1<<63, 1<<63-1)
		nilRows := 0
		for _, sr := range packed.Series {
			for _, p := range sr.Profiles {
				if p.Samples == nil {
					nilRows++
				}
			}
		}
		if nilRows == 0 {
			t.Fatal("the selection has no packed rows")
		}
		id := ulid.Make()
		var files [2]map[string][]byte
		for k, sel := range []head.Selection{th.Select("", nil, -1<<63, 1<<63-1), packed} {
			root := t.TempDir()
			m, err := Write(filepath.Join(root, testTenant), sel, WriteOptions{Tenant: testTenant, ULID: id, RowGroupRows: 7})
			if err != nil {
				t.Fatal(err)
			}
			files[k] = map[string][]byte{}
			for _, f := range m.Files {
				b, err := os.ReadFile(filepath.Join(root, testTenant, id.String(), f.Name))
				if err != nil {
					t.Fatal(err)
				}
				files[k][f.Name] = b
			}
			if k == 1 {
				r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+id.String(), ReaderOptions{})
				if err != nil {
					t.Fatal(err)
				}
				st := th.Stats()
				compareHeadBlock(t, th, r, []string{"", `{service_name="svc1"}`}, st.MinTime, st.MaxTime)
			}
		}
		if !reflect.DeepEqual(files[0], files[1]) {
			t.Fatalf("limit %d: the block of the packed selection differs from Select's", limit)
		}
	}
}

// TestSelectPresizesWholeSeries: a series that lies wholly in the query's
// range gets its rows in one allocation of its final size (no growth, no
// slack), in the full read and the totals-only read; the rows are the
// head's (compareHeadBlock checks partial ranges, which grow as before).
func TestSelectPresizesWholeSeries(t *testing.T) {
	corpus := loadCorpus(t)
	if corpus == nil {
		return
	}
	rng := rand.New(rand.NewPCG(3, 4))
	h := head.New(head.Options{})
	const base = int64(1_700_000_000_000_000_000)
	pushLoad(t, h, corpus, 300, 5, base, 10e9, rng) // tens of rows per series: lengths a growing slice would overshoot
	root := t.TempDir()
	m := writeTenant(t, h, root, WriteOptions{Source: "test", RowGroupRows: 7})
	r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctx := range []context.Context{context.Background(), head.WithTotalsOnly(context.Background())} {
		sel, err := r.Select(ctx, "", nil, m.MinTime, m.MaxTime)
		if err != nil {
			t.Fatal(err)
		}
		want := h.Tenant(testTenant).Select("", nil, m.MinTime, m.MaxTime)
		if len(sel.Series) != len(want.Series) || len(sel.Series) == 0 {
			t.Fatalf("totals only %v: %d series, head %d", head.TotalsOnly(ctx), len(sel.Series), len(want.Series))
		}
		headRows := map[string]int{}
		for _, s := range want.Series {
			headRows[s.Labels.String()] = len(s.Profiles)
		}
		for _, s := range sel.Series {
			if n := headRows[s.Labels.String()]; len(s.Profiles) != n || cap(s.Profiles) != len(s.Profiles) {
				t.Fatalf("totals only %v: series %s: %d rows in a slice of capacity %d, head %d rows",
					head.TotalsOnly(ctx), s.Labels, len(s.Profiles), cap(s.Profiles), n)
			}
		}
	}
}
