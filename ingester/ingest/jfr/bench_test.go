package jfr

import (
	"testing"
	"time"
)

// BenchmarkConvert converts the committed recordings (the safety walk and
// jfr-parser's conversion); recordings/CPU-s is 1e9 / ns/op on one core.
func BenchmarkConvert(b *testing.B) {
	for _, name := range []string{"tiny", "workload"} {
		rec := readGz(b, "testdata/"+name+".jfr.gz")
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Convert(rec, nil, Options{Start: time.Now(), SampleRate: 100}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "recordings/s")
		})
		b.Run(name+"/check", func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := check(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
