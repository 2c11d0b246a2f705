package normalize

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// checkMergeEqual runs mergeEqual and the previous implementation on two
// copies of p and requires equal profiles (ids, order, values, everything).
func checkMergeEqual(t *testing.T, name string, p *googlev1.Profile) {
	t.Helper()
	want, got := p.CloneVT(), p.CloneVT()
	mergeEqualRef(want)
	mergeEqual(got)
	if !got.EqualVT(want) {
		t.Fatalf("%s: mergeEqual differs from the previous implementation: %d/%d functions, %d/%d locations, %d/%d samples (got/want)",
			name, len(got.Function), len(want.Function), len(got.Location), len(want.Location), len(got.Sample), len(want.Sample))
	}
}

// TestMergeEqualSameAsBefore pins the hashed mergeEqual to the string-keyed
// one it replaced, over every corpus profile as decoded, after the Go type
// parameters are dropped from its strings (what DropGoTypeParameters merges),
// and with every function, mapping, location and sample duplicated.
func TestMergeEqualSameAsBefore(t *testing.T) {
	files := testutil.Corpus(t)
	if pd := os.Getenv("HEARTH_PYROSCOPE_REPO"); pd != "" {
		for _, path := range []string{"gotruncatefix/heap_go_truncated_2.pb.gz", "gotruncatefix/cpu_go_truncated_1.pb.gz", "heap"} {
			raw := pyroscopeFile(t, "pkg/pprof/testdata/"+path)
			f := filepath.Join(t.TempDir(), filepath.Base(path))
			if err := os.WriteFile(f, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil {
			continue
		}
		name := filepath.Base(f)
		checkMergeEqual(t, name, p)
		dropped := p.CloneVT()
		for i, s := range dropped.StringTable {
			dropped.StringTable[i] = dropTypeParameters(s)
		}
		checkMergeEqual(t, name+" without type parameters", dropped)
		doubled := p.CloneVT()
		twice := p.CloneVT()
		doubled.Function = append(doubled.Function, twice.Function...)
		doubled.Mapping = append(doubled.Mapping, twice.Mapping...)
		doubled.Location = append(doubled.Location, twice.Location...)
		doubled.Sample = append(doubled.Sample, twice.Sample...)
		checkMergeEqual(t, name+" doubled", doubled)
		n++
	}
	if len(files) > 0 && n < 10 {
		t.Fatalf("only %d corpus profiles decoded", n)
	}
}

// TestMergeEqualRandom compares the two implementations on small random
// profiles dense in duplicates: equal functions under other ids, locations
// equal after their functions merge, samples with labels in any order, value
// counts that differ, ids that refer to nothing, sparse ids.
func TestMergeEqualRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 25))
	for round := range 2000 {
		p := &googlev1.Profile{StringTable: []string{"", "a", "b", "c", "", "lib.so", "deadbeef"}}
		sparse := uint64(1)
		if round%5 == 0 {
			sparse = 1 << 40 // ids far above their number: the map remap
		}
		nf := 1 + r.IntN(6)
		for i := range nf {
			p.Function = append(p.Function, &googlev1.Function{Id: uint64(i+1) * sparse, Name: int64(r.IntN(5)), Filename: int64(r.IntN(2)), StartLine: int64(r.IntN(2))})
		}
		nm := r.IntN(4)
		for i := range nm {
			p.Mapping = append(p.Mapping, &googlev1.Mapping{Id: uint64(i + 1), MemoryStart: uint64(r.IntN(2)) << 12, MemoryLimit: 8 << 12,
				Filename: int64(r.IntN(2) * (4 + r.IntN(2))), BuildId: int64(r.IntN(2) * 6)})
		}
		nl := 1 + r.IntN(10)
		for i := range nl {
			l := &googlev1.Location{Id: uint64(i+1) * sparse, MappingId: uint64(r.IntN(nm + 2)), Address: uint64(r.IntN(2))}
			for range r.IntN(3) {
				l.Line = append(l.Line, &googlev1.Line{FunctionId: uint64(r.IntN(nf+2)) * sparse, Line: int64(r.IntN(2))})
			}
			p.Location = append(p.Location, l)
		}
		for range r.IntN(12) {
			s := &googlev1.Sample{}
			for range r.IntN(4) {
				s.LocationId = append(s.LocationId, uint64(r.IntN(nl+2))*sparse)
			}
			for range 1 + r.IntN(2)*r.IntN(3) {
				s.Value = append(s.Value, int64(r.IntN(100)))
			}
			for range r.IntN(3) {
				s.Label = append(s.Label, &googlev1.Label{Key: int64(1 + r.IntN(2)), Str: int64(r.IntN(3)), Num: int64(r.IntN(2))})
			}
			p.Sample = append(p.Sample, s)
		}
		checkMergeEqual(t, fmt.Sprint("round ", round), p)
	}
}

// BenchmarkMergeEqual measures the type-parameter merge of the corpus's
// large Go heap profile, the implementation against the previous one.
func BenchmarkMergeEqual(b *testing.B) {
	d := testutil.CorpusDir()
	if d == "" {
		b.Skip("corpus not beside the project")
	}
	raw, err := os.ReadFile(filepath.Join(d, "heap_go_truncated_1.pb.gz"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := pprofdec.DecodePprof(raw, 0)
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range p.StringTable {
		p.StringTable[i] = dropTypeParameters(s)
	}
	for _, impl := range []struct {
		name string
		fn   func(*googlev1.Profile)
	}{{"new", mergeEqual}, {"previous", mergeEqualRef}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				c := p.CloneVT()
				b.StartTimer()
				impl.fn(c)
			}
		})
	}
}

// TestRepairSameAsBefore pins RepairTruncatedGoStacks to the implementation
// it replaced (same stacks, same sample order) on the corpus's Go profiles
// and on random deep stacks that share tails, with stacks shorter than the
// compared suffix among them.
func TestRepairSameAsBefore(t *testing.T) {
	check := func(name string, p *googlev1.Profile) {
		t.Helper()
		want, got := p.CloneVT(), p.CloneVT()
		wc, gc := repairTruncatedGoStacksRef(want), RepairTruncatedGoStacks(got)
		if wc != gc || !got.EqualVT(want) {
			t.Fatalf("%s: the repair differs from the previous implementation (changed %v, was %v)", name, gc, wc)
		}
	}
	repaired := 0
	for _, f := range testutil.Corpus(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil || !MayHaveTruncatedGoStacks(p) {
			continue
		}
		check(filepath.Base(f), p)
		if RepairTruncatedGoStacks(p.CloneVT()) {
			repaired++
		}
	}
	if testutil.CorpusDir() != "" && repaired == 0 {
		t.Fatal("no corpus profile was repaired")
	}
	r := rand.New(rand.NewPCG(2, 25))
	for round := range 300 {
		p := &googlev1.Profile{}
		// Stacks cut from a few long chains of frames, at random depths and
		// offsets: many share their root-most frames, some continue others.
		var chains [][]uint64
		for range 1 + r.IntN(4) {
			var c []uint64
			for range 40 + r.IntN(30) {
				c = append(c, uint64(1+r.IntN(60)))
			}
			chains = append(chains, c)
		}
		for range r.IntN(80) {
			c := chains[r.IntN(len(chains))]
			start := r.IntN(len(c) - 1)
			end := min(len(c), start+1+r.IntN(34))
			p.Sample = append(p.Sample, &googlev1.Sample{LocationId: slices.Clone(c[start:end]), Value: []int64{int64(r.IntN(9))}})
		}
		check(fmt.Sprint("round ", round), p)
	}
}

// TestMergeEqualSharedStacks: stacks cut from one array in sample order are
// renumbered where they are; stacks that share memory (one slice for two
// samples, or overlapping ones) are copied, not renumbered twice. Both give
// what the previous implementation gives.
func TestMergeEqualSharedStacks(t *testing.T) {
	build := func(stacks func() [][]uint64) *googlev1.Profile {
		p := &googlev1.Profile{StringTable: []string{"", "f", "g", "h"}}
		p.Function = []*googlev1.Function{{Id: 1, Name: 1}, {Id: 2, Name: 1}, {Id: 3, Name: 2}, {Id: 4, Name: 3}}
		for i := range 4 {
			// Locations 1 and 2 are equal once functions 1 and 2 merge: ids
			// 3 and 4 become 2 and 3.
			p.Location = append(p.Location, &googlev1.Location{Id: uint64(i + 1), Line: []*googlev1.Line{{FunctionId: uint64(i + 1)}}})
		}
		for i, st := range stacks() {
			p.Sample = append(p.Sample, &googlev1.Sample{LocationId: st, Value: []int64{int64(i + 1)}})
		}
		return p
	}
	cases := map[string]func() [][]uint64{
		"one array in order": func() [][]uint64 {
			all := []uint64{3, 4, 4, 3, 1, 4, 3}
			return [][]uint64{all[0:2], all[2:4], all[4:7]}
		},
		"one slice twice": func() [][]uint64 {
			s := []uint64{3, 4}
			return [][]uint64{s, {4, 1}, s}
		},
		"overlapping": func() [][]uint64 {
			all := []uint64{3, 4, 4, 3}
			return [][]uint64{all[0:3], all[1:4]}
		},
		"out of order": func() [][]uint64 {
			all := []uint64{3, 4, 4, 3, 4}
			return [][]uint64{all[3:5], all[0:3]}
		},
	}
	for name, stacks := range cases {
		want, got := build(stacks), build(stacks)
		mergeEqualRef(want)
		mergeEqual(got)
		if !got.EqualVT(want) {
			t.Errorf("%s: differs from the previous implementation", name)
		}
		if inPlace := disjointInOrder(build(stacks).Sample); inPlace != (name == "one array in order") {
			t.Errorf("%s: renumbered in place %v", name, inPlace)
		}
	}
}

// TestCompareTails: the memory comparison orders stacks as leCompare.
func TestCompareTails(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 25))
	vals := []uint64{0, 1, 2, 255, 256, 257, 1 << 8, 1 << 16, 1<<56 + 1, 1 << 63, ^uint64(0)}
	for range 20_000 {
		n := 1 + r.IntN(4)
		a, b := make([]uint64, n), make([]uint64, n)
		for i := range n {
			a[i] = vals[r.IntN(len(vals))]
			b[i] = a[i]
			if r.IntN(3) == 0 {
				b[i] = vals[r.IntN(len(vals))]
			}
		}
		if got, want := compareTails(a, b), leCompare(a, b); got != want {
			t.Fatalf("compareTails(%v, %v) = %d, leCompare %d", a, b, got, want)
		}
	}
}
