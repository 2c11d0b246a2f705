package jfr

import (
	"os"
	"testing"

	jfrpprof "github.com/grafana/jfr-parser/pprof"

	"github.com/hearth-dev/hearth/ingester/symdb"
)

// FuzzConvert feeds arbitrary recordings and labels snapshots to Convert: it
// must return an error or profiles the ingester accepts (every reference
// valid, one value per sample type), never panic or hang. The committed
// recordings seed it besides testdata/fuzz/FuzzConvert.
func FuzzConvert(f *testing.F) {
	snap := &jfrpprof.LabelsSnapshot{Strings: map[int64]string{1: "thread_name", 2: "main", 3: "span"}, Contexts: map[int64]*jfrpprof.Context{1: {Labels: map[int64]int64{1: 2}}, 2: {Labels: map[int64]int64{9: 9}}}}
	labels, err := snap.MarshalVT()
	if err != nil {
		f.Fatal(err)
	}
	if _, err := os.Stat("testdata/tiny.jfr.gz"); err == nil {
		tiny := readGz(f, "testdata/tiny.jfr.gz")
		f.Add(tiny, labels)
		f.Add(tiny[:4096], []byte(nil))
	}
	f.Add([]byte("FLR\x00\x00\x02\x00\x00"), labels)
	f.Fuzz(func(t *testing.T, recording, labels []byte) {
		rec, err := Convert(recording, labels, Options{SampleRate: 100})
		if err != nil {
			return
		}
		for _, p := range rec.Profiles {
			if p.Name == "" {
				t.Fatalf("a profile without a name: %v", p.Profile.SampleType)
			}
			if len(p.Profile.Sample) == 0 {
				t.Fatalf("%s: an empty profile is returned", p.Name)
			}
			if err := symdb.Validate(p.Profile); err != nil {
				t.Fatalf("%s: the ingester would refuse the converted profile: %v", p.Name, err)
			}
			for i, s := range p.Profile.Sample {
				if len(s.Value) != len(p.Profile.SampleType) {
					t.Fatalf("%s: sample %d has %d values for %d sample types", p.Name, i, len(s.Value), len(p.Profile.SampleType))
				}
			}
		}
	})
}
