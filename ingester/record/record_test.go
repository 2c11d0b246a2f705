package record

import (
	"errors"
	"reflect"
	"testing"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/internal/formatver"
)

func TestRecordRoundTrip(t *testing.T) {
	in := []Entry{
		{ID: head.ProfileID{1, 2}, TimeNanos: -5, Labels: model.Labels{{Name: "a", Value: "b"}, {Name: "service_name", Value: "x"}}, Raw: []byte("pprof")},
		{ID: head.ProfileID{3}, TimeNanos: 1 << 60, Labels: model.Labels{}, Raw: []byte{}},
	}
	b := Encode("team-a", in)
	tenant, out, err := Decode(b)
	if err != nil || tenant != "team-a" || !reflect.DeepEqual(in, out) {
		t.Fatalf("%v %q %+v", err, tenant, out)
	}
	for i := 0; i < len(b); i++ {
		if _, _, err := Decode(b[:i]); !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
}

// TestRecordVersions: version 1 decodes; version 2 (a newer release) is
// refused as unsupported, not as corrupt; 0 is corrupt.
func TestRecordVersions(t *testing.T) {
	b := Encode("t", []Entry{{Labels: model.Labels{{Name: "a", Value: "b"}}, Raw: []byte("x")}})
	if b[0] != 1 {
		t.Fatalf("this release writes record version %d", b[0])
	}
	b[0] = 2
	if _, _, err := Decode(b); !errors.Is(err, formatver.ErrUnsupported) || errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("version 2: %v", err)
	}
	b[0] = 0
	if _, _, err := Decode(b); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("version 0: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(Encode("t", []Entry{{Labels: model.Labels{{Name: "a", Value: "b"}}, Raw: []byte("x")}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		tenant, entries, err := Decode(b)
		if err != nil {
			return
		}
		t2, e2, err := Decode(Encode(tenant, entries))
		if err != nil || t2 != tenant || len(e2) != len(entries) {
			t.Fatalf("a decoded record does not survive re-encoding: %v", err)
		}
	})
}
