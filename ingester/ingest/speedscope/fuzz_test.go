package speedscope

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzConvert: any input is either refused with an *Error or converted
// into well-formed profiles (one sample type, positive values, known
// locations).
func FuzzConvert(f *testing.F) {
	f.Add([]byte(evented), "api", uint32(100))
	f.Add([]byte(twoSampled), "worker.wall", uint32(0))
	f.Add([]byte(strings.ReplaceAll(twoSampled, `"seconds"`, `"bytes"`)), "w", uint32(7))
	f.Add([]byte(`{"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": []}`), "", uint32(1))
	f.Add([]byte(`{"$schema": 1}`), "x", uint32(100))
	f.Fuzz(func(t *testing.T, data []byte, app string, rate uint32) {
		ps, err := Convert(data, Options{AppName: app, SampleRate: rate})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, p := range ps {
			if err := wellFormed(p); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func wellFormed(p Profile) error {
	pp := p.Profile
	if len(pp.SampleType) != 1 || p.Metric == "" {
		return fmt.Errorf("sample types %d, metric %q", len(pp.SampleType), p.Metric)
	}
	locs := map[uint64]bool{}
	for _, l := range pp.Location {
		locs[l.Id] = true
	}
	for _, s := range pp.Sample {
		if len(s.Value) != 1 || s.Value[0] <= 0 || len(s.LocationId) == 0 {
			return fmt.Errorf("sample %v", s)
		}
		for _, id := range s.LocationId {
			if !locs[id] {
				return fmt.Errorf("unknown location %d", id)
			}
		}
	}
	return nil
}

// benchFile is a py-spy-like file: threads profiles of samples stacks.
func benchFile(threads, samples int) []byte {
	var b strings.Builder
	b.WriteString(`{"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": [`)
	const frames = 200
	for i := 0; i < frames; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name": "module.function_%d", "file": "/app/module_%d.py", "line": %d}`, i, i%20, i)
	}
	b.WriteString(`]}, "profiles": [`)
	for t := 0; t < threads; t++ {
		if t > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type": "sampled", "name": "thread %d", "unit": "seconds", "startValue": 0, "endValue": 10, "samples": [`, t)
		for s := 0; s < samples; s++ {
			if s > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('[')
			depth := 5 + (s*7)%25
			for d := 0; d < depth; d++ {
				if d > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "%d", (d*31+s*(d+1))%frames)
			}
			b.WriteByte(']')
		}
		b.WriteString(`], "weights": [`)
		for s := 0; s < samples; s++ {
			if s > 0 {
				b.WriteByte(',')
			}
			b.WriteString("0.01")
		}
		b.WriteString("]}")
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func BenchmarkConvert(b *testing.B) {
	data := benchFile(4, 2500)
	if _, err := Convert(data, Options{AppName: "app"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Convert(data, Options{AppName: "app"}); err != nil {
			b.Fatal(err)
		}
	}
}
