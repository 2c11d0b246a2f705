package pprofdec

import (
	"strings"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// TestArenaReuse decodes profiles of different shapes one after another
// into the same arena: each must decode exactly as into fresh memory (no
// field, label, line or string left over from the one before).
func TestArenaReuse(t *testing.T) {
	withLabels := sampleProfile()
	withLabels.Sample[0].Label = []*googlev1.Label{{Key: 1, Str: 2}, {Key: 1, Num: 7, NumUnit: 2}}
	withLabels.Comment = []int64{1, 2}
	withLabels.Mapping = []*googlev1.Mapping{{Id: 1, Filename: 5, HasFunctions: true}}
	withLabels.Location[0].MappingId = 1
	noPeriod := sampleProfile()
	noPeriod.PeriodType, noPeriod.Period = nil, 0
	var inputs [][]byte
	for _, p := range []*googlev1.Profile{withLabels, noPeriod, sampleProfile()} {
		raw, err := p.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, raw, gz(raw))
	}
	for _, f := range loadCorpus(t) {
		inputs = append(inputs, f.data)
	}
	a := &Arena{pooled: true}
	for round := range 2 {
		for i, in := range inputs {
			want, werr := DecodePprof(in, 64<<20)
			a.released = false
			got, err := a.Decode(in, 64<<20)
			if (err == nil) != (werr == nil) {
				t.Fatalf("round %d input %d: err %v, fresh decode err %v", round, i, err, werr)
			}
			if err == nil && !got.EqualVT(want) {
				t.Fatalf("round %d input %d: the reused arena decodes differently", round, i)
			}
			a.Release()
			arenaPool.Get() // keep the pool from handing a out elsewhere
		}
	}
}

// TestPoisonOnRelease: a string kept past Release reads garbage in
// ReleasePoison mode (what the write path's retention tests rely on).
func TestPoisonOnRelease(t *testing.T) {
	SetReleaseMode(ReleasePoison)
	defer SetReleaseMode(ReleaseReuse)
	raw, _ := sampleProfile().MarshalVT()
	p, a, err := Decode(gz(raw), 0)
	if err != nil {
		t.Fatal(err)
	}
	kept := p.StringTable[5]
	copied := strings.Clone(kept)
	if kept != "main" || copied != "main" {
		t.Fatalf("decoded %q", kept)
	}
	a.Release()
	if kept == "main" {
		t.Fatal("a string kept past Release still reads the same: poisoning does not work")
	}
	if copied != "main" {
		t.Fatalf("a copied string changed: %q", copied)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second Release did not panic")
		}
	}()
	a.Release()
}

func TestDecodeError(t *testing.T) {
	for _, in := range [][]byte{nil, {0x1f, 0x8b}, {0xff, 0xff, 0xff}} {
		p, a, err := Decode(in, 0)
		if err == nil || p != nil || a == nil {
			t.Fatalf("Decode(%x) = %v, %v, %v", in, p, a, err)
		}
		a.Release()
	}
}

// TestLargeArenaPooled: a profile of more than LargeProfileBytes (a large
// Go heap profile) decodes into an arena of the large pool, which keeps it
// on Release, where the small pool's bound would drop it and the next such
// push would allocate its whole arena again.
func TestLargeArenaPooled(t *testing.T) {
	p := sampleProfile()
	p.Sample = nil
	for i := range 40_000 {
		s := &googlev1.Sample{Value: []int64{1, int64(i)}}
		for j := range 32 {
			s.LocationId = append(s.LocationId, uint64(1+(i*7+j)%1000))
		}
		p.Sample = append(p.Sample, s)
	}
	for i := range 1000 {
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(i + 1)})
	}
	raw, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < LargeProfileBytes {
		t.Fatalf("test profile of %d bytes is not large", len(raw))
	}
	// Two gzip members, as hearth load sends them (the profile, then its
	// time): the trailer's size is the second's.
	zipped := append(gz(raw), gz([]byte{9 << 3, 1})...)
	p.TimeNanos = 1
	if !largeInput(zipped) || !largeInput(raw) {
		t.Fatal("a large profile is not taken for one")
	}
	got, a, err := Decode(zipped, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.EqualVT(p) {
		t.Fatal("decoded differently")
	}
	if !a.large || !a.keepable() {
		t.Fatalf("large %v, keepable %v (footprint %d)", a.large, a.keepable(), a.footprint())
	}
	a.Release()
	// Its second decode of such a profile fits the arrays it kept: nothing
	// spills into new ones (the first spilled: they started small).
	x := &Arena{pooled: true, large: true}
	for round := range 2 {
		x.released = false
		if _, err := x.Decode(zipped, 0); err != nil {
			t.Fatal(err)
		}
		if spilled := x.spill.u64 > 0; spilled != (round == 0) {
			t.Fatalf("decode %d: location ids spilled %d", round+1, x.spill.u64)
		}
		x.Release()
		getLarge() // keep the list from handing x out elsewhere
	}
	// An arena of the small pool that a large profile grew goes to the
	// large pool, not away.
	small := &Arena{pooled: true}
	if _, err := small.Decode(zipped, 0); err != nil {
		t.Fatal(err)
	}
	if small.footprint() <= MaxPooledBytes {
		t.Fatalf("footprint %d: the test profile is too small", small.footprint())
	}
	small.Release()
	getLarge()
	if !small.large {
		t.Fatal("a grown small-pool arena was not moved to the large pool")
	}
	raw2, _ := sampleProfile().MarshalVT()
	_, b, err := Decode(gz(raw2), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.large {
		t.Fatal("a small profile took a large arena")
	}
	b.Release()
}

// TestLargeArenasBounded: however many large pushes ran at once, at most
// MaxLargeArenas of their arenas are kept.
func TestLargeArenasBounded(t *testing.T) {
	for len(largeFree) > 0 {
		<-largeFree
	}
	for range MaxLargeArenas + 3 {
		a := &Arena{pooled: true, large: true}
		a.Release()
	}
	if n := len(largeFree); n != MaxLargeArenas {
		t.Fatalf("%d large arenas kept, want %d", n, MaxLargeArenas)
	}
	for len(largeFree) > 0 {
		<-largeFree
	}
}
