package head

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// randomProfile is testProfile with a random subset of samples, random
// values, and span ids on some samples, so consecutive rows differ.
func randomProfile(r *rand.Rand) *googlev1.Profile {
	p := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "span_id", "00000000000000a1", "00000000000000b2", "00000000000000c3"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		PeriodType:  &googlev1.ValueType{Type: 1, Unit: 2},
	}
	const funcs = 40
	for i := 1; i <= funcs; i++ {
		p.StringTable = append(p.StringTable, "f"+string(rune('A'+i)))
		p.Function = append(p.Function, &googlev1.Function{Id: uint64(i), Name: int64(len(p.StringTable) - 1)})
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(i), Line: []*googlev1.Line{{FunctionId: uint64(i), Line: int64(i)}}})
	}
	for i := 0; i < 300; i++ {
		if r.IntN(3) == 0 {
			continue
		}
		rs := rand.New(rand.NewPCG(uint64(i), 7)) // the same stack for sample i in every profile
		depth := 1 + rs.IntN(8)
		locs := make([]uint64, depth)
		for d := range locs {
			locs[d] = 1 + rs.Uint64N(funcs)
		}
		s := &googlev1.Sample{LocationId: locs, Value: []int64{r.Int64N(1 << uint(1+r.IntN(40)))}}
		if r.IntN(4) == 0 {
			s.Label = []*googlev1.Label{{Key: 3, Str: 4 + r.Int64N(3)}}
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// twoHeads fills a packing head and a reference head that never packs with
// the same pushes: rows of 2 series, times mostly ascending (some earlier),
// plus retries of earlier ids.
func twoHeads(t *testing.T, pushes int) (packed, ref *Head) {
	packed, ref = New(Options{}), New(Options{})
	ref.noPack = true
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < pushes; i++ {
		p := randomProfile(r)
		ts := int64(i) * 10
		if i%13 == 5 {
			ts = int64(i-7) * 10 // out of order
		}
		id := ProfileID{byte(i), byte(i >> 8)}
		if i%17 == 3 {
			id = ProfileID{byte(i - 2), byte((i - 2) >> 8)} // a retry: a duplicate
		}
		for _, h := range []*Head{packed, ref} {
			if _, err := h.Append("t", id, base(), p.CloneVT(), ts); err != nil {
				t.Fatal(err)
			}
		}
	}
	return packed, ref
}

func TestPackedSelectEqualsUnpacked(t *testing.T) {
	packed, ref := twoHeads(t, 8*13+5)
	pt, rt := packed.Tenant("t"), ref.Tenant("t")
	nPacked := 0
	for _, s := range pt.series {
		nPacked += len(s.packed)
		for i, p := range s.profiles {
			if (p.Samples == nil) != (i < len(s.packed)*PackRows) {
				t.Fatalf("row %d: samples nil %v with %d blocks packed", i, p.Samples == nil, len(s.packed))
			}
		}
		if len(s.profiles) >= AggregateRows && len(s.aggs) == 0 {
			t.Fatal("no aggregate was computed over packed rows")
		}
	}
	if nPacked == 0 {
		t.Fatal("nothing was packed")
	}
	if pb, rb := pt.Bytes(), rt.Bytes(); pb >= rb {
		t.Fatalf("packed head %d bytes, unpacked %d", pb, rb)
	}
	ranges := [][2]int64{{math.MinInt64, math.MaxInt64}, {0, 1000}, {95, 333}, {300, 310}, {555, 555}, {-100, -1}, {400, math.MaxInt64}}
	for _, rg := range ranges {
		for _, ptype := range []string{"", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"} {
			want := rt.Select(ptype, nil, rg[0], rg[1])
			got := pt.Select(ptype, nil, rg[0], rg[1])
			if len(got.Series) != len(want.Series) {
				t.Fatalf("%v: %d series, want %d", rg, len(got.Series), len(want.Series))
			}
			for i := range want.Series {
				w, g := want.Series[i], got.Series[i]
				if !reflect.DeepEqual(w.Labels, g.Labels) || len(w.Profiles) != len(g.Profiles) {
					t.Fatalf("%v: series %d differs: %d rows, want %d", rg, i, len(g.Profiles), len(w.Profiles))
				}
				for j := range w.Profiles {
					if !reflect.DeepEqual(w.Profiles[j], g.Profiles[j]) {
						t.Fatalf("%v: series %d row %d differs", rg, i, j)
					}
				}
				if !reflect.DeepEqual(w.Aggregates, g.Aggregates) {
					t.Fatalf("%v: series %d: aggregates differ", rg, i)
				}
				for _, a := range g.Aggregates {
					if !a.Valid(g.Profiles) {
						t.Fatalf("%v: an aggregate is not valid for its rows", rg)
					}
				}
			}
		}
	}
	// Span samples survive packing.
	spans := 0
	for _, s := range pt.Select("", nil, math.MinInt64, math.MaxInt64).Series {
		for _, p := range s.Profiles {
			if err := DecodeSpans(p.Samples, func(uint64, uint32, int64) { spans++ }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if spans == 0 {
		t.Fatal("no span samples")
	}
}

func TestPackBlockRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{0, 1, 100, 5000} {
		rows := make([]Profile, PackRows)
		for i := range rows {
			n := r.IntN(size + 1)
			rows[i].Samples = make([]byte, n)
			for j := range rows[i].Samples {
				rows[i].Samples[j] = byte(r.IntN(4)) // compressible
			}
			if size == 5000 && i == 3 {
				for j := range rows[i].Samples {
					rows[i].Samples[j] = byte(r.Uint32())
				}
			}
		}
		blk := packBlock(rows)
		got := unpackRange(make([]Profile, PackRows), []packedBlock{blk}, 0, PackRows)
		for i := range rows {
			if len(got[i].Samples) != len(rows[i].Samples) || string(got[i].Samples) != string(rows[i].Samples) {
				t.Fatalf("size %d row %d: %d bytes back, want %d", size, i, len(got[i].Samples), len(rows[i].Samples))
			}
		}
		// A sub-range of the block.
		got = unpackRange(make([]Profile, PackRows), []packedBlock{blk}, 2, 5)
		for i := range got {
			if string(got[i].Samples) != string(rows[2+i].Samples) {
				t.Fatalf("size %d: sub-range row %d differs", size, 2+i)
			}
		}
	}
}

// A block that does not decompress leaves its rows without samples, which
// the decoders report: never a panic, never other rows' bytes.
func TestPackedCorruptBlock(t *testing.T) {
	rows := make([]Profile, PackRows)
	for i := range rows {
		rows[i].Samples = EncodeSamples(nil, []uint32{1, 2, 3}, []int64{int64(i), 5, 6})
	}
	blk := packBlock(rows)
	if blk.raw {
		t.Fatal("expected a compressed block")
	}
	blk.data = append([]byte(nil), blk.data[:len(blk.data)/2]...)
	got := unpackRange(make([]Profile, PackRows), []packedBlock{blk}, 0, PackRows)
	for i := range got {
		if err := DecodeSamples(got[i].Samples, func(uint32, int64) {}); err == nil {
			t.Fatalf("row %d of a corrupt block decoded", i)
		}
	}
}

// TestSelectLazy: a lazy selection leaves packed only rows that a returned
// aggregate covers, and its Unpacked rows are Select's rows.
func TestSelectLazy(t *testing.T) {
	packed, _ := twoHeads(t, 3*AggregateRows+PackRows+3)
	pt := packed.Tenant("t")
	lazyRows := 0
	for _, rg := range [][2]int64{{math.MinInt64, math.MaxInt64}, {0, 1000}, {95, 333}, {400, math.MaxInt64}} {
		want := pt.Select("", nil, rg[0], rg[1])
		got := pt.SelectLazy("", nil, rg[0], rg[1])
		if len(got.Series) != len(want.Series) {
			t.Fatalf("%v: %d series, want %d", rg, len(got.Series), len(want.Series))
		}
		for i := range want.Series {
			w, g := want.Series[i], got.Series[i]
			if !reflect.DeepEqual(w.Aggregates, g.Aggregates) {
				t.Fatalf("%v: aggregates differ", rg)
			}
			for j, p := range g.Profiles {
				if p.Samples != nil {
					continue
				}
				lazyRows++
				covered := false
				for _, a := range g.Aggregates {
					covered = covered || (j >= a.First && j < a.First+a.Rows)
				}
				if !covered {
					t.Fatalf("%v: row %d is packed without an aggregate", rg, j)
				}
			}
			if u := g.Unpacked(0, len(g.Profiles)); !reflect.DeepEqual(u, w.Profiles) {
				t.Fatalf("%v: series %d: unpacked rows differ from Select's", rg, i)
			}
			if u := g.Unpacked(3, len(g.Profiles)-2); !reflect.DeepEqual(u, w.Profiles[3:len(w.Profiles)-2]) {
				t.Fatalf("%v: series %d: unpacked sub-range differs", rg, i)
			}
		}
	}
	if lazyRows == 0 {
		t.Fatal("no row was left packed")
	}
}

// TestPackConcurrent: pushes that fill and pack blocks while selections of
// every kind read and unpack the same series (run with -race); every row a
// reader gets has its samples, and the totals of its decoded values add up.
func TestPackConcurrent(t *testing.T) {
	h := New(Options{})
	const writers, per = 3, 4*PackRows + 3
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for i := 0; i < per; i++ {
				if _, err := h.Append("t", ProfileID{byte(i), byte(w)}, base(), randomProfile(r), int64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	check := func(rows []Profile) {
		for _, p := range rows {
			var sum int64
			if err := DecodeSamples(p.Samples, func(_ uint32, v int64) { sum += v }); err != nil {
				t.Fatal(err)
			}
			if sum != p.Total {
				t.Fatalf("row total %d, samples sum to %d", p.Total, sum)
			}
		}
	}
	for finished := 0; finished < writers; {
		select {
		case <-done:
			finished++
		default:
		}
		th := h.Tenant("t")
		if th == nil {
			continue
		}
		for _, sr := range th.Select("", nil, math.MinInt64, math.MaxInt64).Series {
			check(sr.Profiles)
		}
		for _, sr := range th.SelectLazy("", nil, math.MinInt64, math.MaxInt64).Series {
			check(sr.Unpacked(0, len(sr.Profiles)))
		}
		for _, sr := range th.SelectPacked("", nil, 3, 20).Series {
			check(sr.Unpacked(0, len(sr.Profiles)))
		}
	}
}
