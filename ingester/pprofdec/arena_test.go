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
