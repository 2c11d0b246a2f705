package block

import (
	"math/rand/v2"
	"testing"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

func seedSymbols(tb testing.TB) []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	h := head.New(head.Options{})
	ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "s"}}.Sort()
	if _, err := h.Append(testTenant, head.ProfileID{1}, ls, synthetic(rng, 6, "x"), 1); err != nil {
		tb.Fatal(err)
	}
	return encodeSymbols(h.Tenant(testTenant).Select("", nil, 0, 10).Symbols)
}

// FuzzDecodeSymbols: any input decodes to a snapshot whose every reference
// resolves, or to an error; never a panic.
func FuzzDecodeSymbols(f *testing.F) {
	f.Add(seedSymbols(f))
	f.Add([]byte("HSYM\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sn, err := decodeSymbols(b, 1<<20)
		if err != nil {
			return
		}
		for i := range sn.Nodes {
			_ = sn.Stack(nil, uint32(i))
			_ = stackKey(sn, uint32(i))
		}
		if again, err := decodeSymbols(encodeSymbols(sn), 1<<20); err != nil || len(again.Nodes) != len(sn.Nodes) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// FuzzDecodeIndex: the series index decodes or errors.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex([]Series{{Labels: model.Labels{{Name: "a", Value: "b"}}, Rows: 3, MinTime: 5, MaxTime: 9}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := DecodeIndex(b)
		if err != nil {
			return
		}
		for _, s := range ss {
			if s.Rows <= 0 || s.MaxTime < s.MinTime {
				t.Fatalf("bad series %+v", s)
			}
		}
	})
}

// FuzzParseMeta: meta.json parses into a valid meta or errors.
func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"version":1,"ulid":"01M88RNH3FH1313K3C0PVVB4HT","tenant":"t","min_time_ns":1,"max_time_ns":2,"stats":{"series":1,"profiles":1,"samples":3},"files":[{"name":"index.bin","size":10},{"name":"profiles.parquet","size":100},{"name":"symbols.bin","size":20}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if err != nil {
			return
		}
		out, err := MarshalMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMeta(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
