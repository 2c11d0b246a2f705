package pprofdec

import (
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// sameAsVT checks that unmarshal decodes b as UnmarshalVT does (unknown
// fields aside, which unmarshal skips), or fails where UnmarshalVT fails or
// b holds what unmarshal leaves to UnmarshalVT.
func sameAsVT(t *testing.T, name string, b []byte) {
	t.Helper()
	want := new(googlev1.Profile)
	wantErr := want.UnmarshalVT(b)
	got, err := unmarshal(b)
	if err != nil {
		return // DecodePprof falls back to UnmarshalVT
	}
	if wantErr != nil {
		t.Fatalf("%s: unmarshal decoded what UnmarshalVT refuses (%v)", name, wantErr)
	}
	// Compare without unknown fields: re-encode UnmarshalVT's profile without them.
	clean, err := want.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if !got.EqualVT(want) {
		// want may carry unknown fields: compare field by field through a round trip.
		stripped, err := unmarshal(clean)
		if err != nil || !stripped.EqualVT(got) {
			t.Fatalf("%s: unmarshal and UnmarshalVT decode differently", name)
		}
		if got.SizeVT() > len(clean) {
			t.Fatalf("%s: unmarshal decoded more than UnmarshalVT", name)
		}
	}
}

// unmarshal decodes b with the arena decoder alone (no fallback), into a
// fresh arena.
func unmarshal(b []byte) (*googlev1.Profile, error) {
	a := new(Arena)
	a.buf.Write(b)
	if err := a.decode(); err != nil {
		return nil, err
	}
	return &a.p, nil
}

func TestUnmarshalMatchesVT(t *testing.T) {
	raw, _ := sampleProfile().MarshalVT()
	sameAsVT(t, "sample", raw)
	withLabels := sampleProfile()
	withLabels.Sample[0].Label = []*googlev1.Label{{Key: 1, Str: 2}, {Key: 1, Num: 7, NumUnit: 2}}
	withLabels.Comment = []int64{1, 2}
	withLabels.DropFrames, withLabels.KeepFrames, withLabels.DurationNanos, withLabels.DefaultSampleType = 1, 2, 3, 1
	raw, _ = withLabels.MarshalVT()
	sameAsVT(t, "labels", raw)
	// Unpacked repeated scalars (older writers) decode the same.
	unpacked := []byte{
		0x12, 0x06, // sample, 6 bytes
		0x08, 0x01, 0x08, 0x02, // location_id 1, 2 unpacked
		0x10, 0x05, // value 5 unpacked
	}
	sameAsVT(t, "unpacked", unpacked)
	for _, f := range loadCorpus(t) {
		data, err := Gunzip(f.data, 64<<20)
		if err != nil {
			continue
		}
		sameAsVT(t, f.name, data)
		if _, err := unmarshal(data); err != nil && new(googlev1.Profile).UnmarshalVT(data) == nil {
			t.Logf("%s: left to UnmarshalVT: %v", f.name, err)
		}
	}
}

func FuzzUnmarshalMatchesVT(f *testing.F) {
	raw, _ := sampleProfile().MarshalVT()
	f.Add(raw)
	f.Add([]byte{0x12, 0x06, 0x08, 0x01, 0x08, 0x02, 0x10, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) { sameAsVT(t, "fuzz", b) })
}
