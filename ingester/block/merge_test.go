package block

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

type push struct {
	id head.ProfileID
	ls model.Labels
	ts int64
	p  int // seed of the synthetic profile
}

// replicaBlocks writes, for each replica, the pushes cut into blocks at the
// replica's own cut times: as three ingesters with RF 3 and unaligned cuts do.
func replicaBlocks(t *testing.T, root string, pushes []push, cuts [][]int64) []*Reader {
	t.Helper()
	bkt := fsBucket(t, root)
	var out []*Reader
	for _, rc := range cuts {
		bounds := append(append([]int64{-1 << 63}, rc...), 1<<63-1)
		for b := 0; b+1 < len(bounds); b++ {
			h := head.New(head.Options{})
			n := 0
			for _, p := range pushes {
				if p.ts < bounds[b] || p.ts >= bounds[b+1] {
					continue
				}
				if _, err := h.Append(testTenant, p.id, p.ls, synthetic(rand.New(rand.NewPCG(uint64(p.p), 7)), 20, "l"), p.ts); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n == 0 {
				continue
			}
			m := writeTenant(t, h, root, WriteOptions{RowGroupRows: 7})
			r, err := Open(context.Background(), bkt, testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
	}
	return out
}

func selectAll(t *testing.T, r *Reader) head.Selection {
	t.Helper()
	sel, err := r.Select(context.Background(), "", nil, -1<<63, 1<<63-1)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestMergeDedupesExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var pushes []push
	for i := 0; i < 300; i++ {
		var id head.ProfileID
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "svc"},
			{Name: "instance", Value: string(rune('a' + i%7))}}.Sort()
		// Some profiles share a timestamp: the id orders them.
		pushes = append(pushes, push{id: id, ls: ls, ts: base + int64(i/2)*int64(time.Second), p: i % 40})
	}
	sec := int64(time.Second)
	cuts := [][]int64{{base + 37*sec, base + 101*sec}, {base + 50*sec, base + 99*sec}, {base + 12*sec}}
	root := t.TempDir()
	inputs := replicaBlocks(t, root, pushes, cuts)
	if len(inputs) < 7 {
		t.Fatalf("%d input blocks", len(inputs))
	}

	// What a single head holding every push once writes.
	want := head.New(head.Options{})
	for _, p := range pushes {
		if _, err := want.Append(testTenant, p.id, p.ls, synthetic(rand.New(rand.NewPCG(uint64(p.p), 7)), 20, "l"), p.ts); err != nil {
			t.Fatal(err)
		}
	}
	wantMeta := writeTenant(t, want, t.TempDir(), WriteOptions{})
	wantFlat := flatten(t, want.Tenant(testTenant).Select("", nil, -1<<63, 1<<63-1))

	out := t.TempDir()
	outBkt := fsBucket(t, out)
	var sources []ulid.ULID
	for _, r := range inputs {
		sources = append(sources, r.Meta().ULID)
	}
	// One range holding everything, and the same data split into two ranges.
	mid := base + 75*sec
	for _, ranges := range [][][2]int64{{{base, base + 3600*sec}}, {{base, mid}, {mid, base + 3600*sec}}} {
		got := map[string][]string{}
		var rows int64
		for _, rg := range ranges {
			m, st, err := Merge(context.Background(), filepath.Join(out, testTenant), inputs, MergeOptions{
				Tenant: testTenant, Source: "test", RowGroupRows: 11,
				Compaction: Compaction{Level: 1, RangeStart: rg[0], RangeEnd: rg[1], Sources: sources},
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.InputRows != st.OutputRows+st.Duplicates {
				t.Errorf("stats %+v do not add up", st)
			}
			rows += m.Stats.Profiles
			r, err := Open(context.Background(), outBkt, testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.MinTime < rg[0] || m.MaxTime >= rg[1] {
				t.Errorf("merged block [%d, %d] outside its range %v", m.MinTime, m.MaxTime, rg)
			}
			for k, v := range flatten(t, selectAll(t, r)) {
				got[k] = append(got[k], v...)
			}
			if len(ranges) == 1 {
				sn, err := r.Symbols(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(sn.Nodes) < 2 || len(sn.Strings) < 2 {
					t.Errorf("merged symbols are empty")
				}
			}
		}
		if rows != wantMeta.Stats.Profiles {
			t.Errorf("%d ranges: %d rows merged, a head with every push once has %d", len(ranges), rows, wantMeta.Stats.Profiles)
		}
		if !reflect.DeepEqual(got, wantFlat) {
			t.Errorf("%d ranges: merged content differs from the single head's", len(ranges))
		}
	}
}

func TestMergeSymbolsDeduplicated(t *testing.T) {
	// The same profile pushed into three heads (three ids): the merged symbols
	// are exactly those of one head holding all three.
	root := t.TempDir()
	bkt := fsBucket(t, root)
	one := head.New(head.Options{})
	var inputs []*Reader
	for i := 0; i < 3; i++ {
		h := head.New(head.Options{})
		ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "s"}}.Sort()
		p := synthetic(rand.New(rand.NewPCG(9, 9)), 30, "")
		id := head.ProfileID{byte(i + 1)}
		for _, hh := range []*head.Head{h, one} {
			if _, err := hh.Append(testTenant, id, ls, p, int64(1000+i)); err != nil {
				t.Fatal(err)
			}
		}
		m := writeTenant(t, h, root, WriteOptions{})
		r, err := Open(context.Background(), bkt, testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, r)
	}
	m, _, err := Merge(context.Background(), filepath.Join(root, "out"), inputs, MergeOptions{Tenant: testTenant, Compaction: Compaction{Level: 1, RangeStart: 0, RangeEnd: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), fsBucket(t, root), "out/"+m.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Symbols(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wm := writeTenant(t, one, filepath.Join(root, "one"), WriteOptions{})
	wr, err := Open(context.Background(), fsBucket(t, filepath.Join(root, "one")), testTenant+"/"+wm.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := wr.Symbols(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{{"strings", len(got.Strings), len(want.Strings)}, {"mappings", len(got.Mappings), len(want.Mappings)},
		{"functions", len(got.Functions), len(want.Functions)}, {"locations", len(got.Locations), len(want.Locations)},
		{"nodes", len(got.Nodes), len(want.Nodes)}} {
		if c.got != c.want {
			t.Errorf("%s: merged table has %d entries, one head has %d", c.name, c.got, c.want)
		}
	}
	if m.Stats.Profiles != wm.Stats.Profiles || m.Stats.Series != wm.Stats.Series {
		t.Errorf("%d rows in %d series, one head has %d in %d", m.Stats.Profiles, m.Stats.Series, wm.Stats.Profiles, wm.Stats.Series)
	}
	if !reflect.DeepEqual(flatten(t, selectAll(t, r)), flatten(t, selectAll(t, wr))) {
		t.Errorf("merged content differs")
	}
}

func TestMergeEmptyRange(t *testing.T) {
	root := t.TempDir()
	h := oneProfileHead(t, 5000, "svc")
	m := writeTenant(t, h, root, WriteOptions{})
	r, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, st, err := Merge(context.Background(), filepath.Join(root, testTenant), []*Reader{r}, MergeOptions{Tenant: testTenant, Compaction: Compaction{Level: 1, RangeStart: 0, RangeEnd: 1000, Sources: []ulid.ULID{m.ULID}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Stats.Profiles != 0 || st.OutOfRange != m.Stats.Profiles {
		t.Fatalf("empty merge: %+v %+v", out.Stats, st)
	}
	er, err := Open(context.Background(), fsBucket(t, root), testTenant+"/"+out.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatalf("an empty merged block must open: %v", err)
	}
	if sel := selectAll(t, er); len(sel.Series) != 0 {
		t.Fatalf("empty block selects %d series", len(sel.Series))
	}
}

// TestMergeKeepsSpanSamples: the span samples of each row (what
// SelectMergeSpanProfile reads) survive a merge whose symbol tables renumber
// and reorder the stacks.
func TestMergeKeepsSpanSamples(t *testing.T) {
	withSpans := func(seed int) *googlev1.Profile {
		p := synthetic(rand.New(rand.NewPCG(uint64(seed), 7)), 30, "")
		k := int64(len(p.StringTable))
		p.StringTable = append(p.StringTable, "span_id", fmt.Sprintf("%016x", 0xa0+seed))
		for i, s := range p.Sample {
			if i%2 == 0 {
				s.Label = append(s.Label, &googlev1.Label{Key: k, Str: k + 1})
			}
		}
		return p
	}
	spanTotals := func(sel head.Selection) map[uint64]int64 {
		out := map[uint64]int64{}
		for _, s := range sel.Series {
			for _, p := range s.Profiles {
				if err := head.DecodeSpans(p.Samples, func(span uint64, _ uint32, v int64) { out[span] += v }); err != nil {
					t.Fatal(err)
				}
			}
		}
		return out
	}
	root := t.TempDir()
	bkt := fsBucket(t, root)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "svc"}}.Sort()
	want := map[uint64]int64{}
	var inputs []*Reader
	for b := 0; b < 2; b++ {
		h := head.New(head.Options{})
		for i := 0; i < 5; i++ {
			// Different profiles per block: the merged symbols renumber both.
			if _, err := h.Append(testTenant, head.ProfileID{byte(b), byte(i)}, ls, withSpans(10*b+i), base+int64(10*b+i)*int64(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range spanTotals(h.Tenant(testTenant).Select("", nil, -1<<63, 1<<63-1)) {
			want[k] += v
		}
		m := writeTenant(t, h, root, WriteOptions{})
		r, err := Open(context.Background(), bkt, testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, r)
	}
	if len(want) != 10 {
		t.Fatalf("the inputs carry %d spans, want 10", len(want))
	}
	out := t.TempDir()
	m, _, err := Merge(context.Background(), filepath.Join(out, testTenant), inputs, MergeOptions{
		Tenant: testTenant, Source: "test",
		Compaction: Compaction{Level: 1, RangeStart: base, RangeEnd: base + 3600*int64(time.Second), Sources: []ulid.ULID{inputs[0].Meta().ULID, inputs[1].Meta().ULID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), fsBucket(t, out), testTenant+"/"+m.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := spanTotals(selectAll(t, r)); !reflect.DeepEqual(got, want) {
		t.Fatalf("span totals after the merge %v, want %v", got, want)
	}
}
