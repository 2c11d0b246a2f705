package pprofdec

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/klauspost/compress/gzip"
)

// corpusDir finds ../shared/testdata/pprof next to the repository root
// (the directory holding go.mod), or returns "".
func corpusDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "testdata", "pprof")
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				return d
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

type corpusFile struct {
	name string
	data []byte
}

func loadCorpus(tb testing.TB) []corpusFile {
	tb.Helper()
	dir := corpusDir(tb)
	if dir == "" {
		tb.Log("corpus tests did not run: ../shared/testdata/pprof not found")
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []corpusFile
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, corpusFile{e.Name(), b})
	}
	return out
}

func sampleProfile() *googlev1.Profile {
	return &googlev1.Profile{
		StringTable: []string{"", "samples", "count", "cpu", "nanoseconds", "main", "foo"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}, {Type: 3, Unit: 4}},
		PeriodType:  &googlev1.ValueType{Type: 3, Unit: 4},
		Period:      10000000,
		Function:    []*googlev1.Function{{Id: 1, Name: 5}, {Id: 2, Name: 6}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{2, 1}, Value: []int64{3, 30000000}}},
		TimeNanos:   1700000000000000000,
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func TestDecodePprof(t *testing.T) {
	raw, err := sampleProfile().MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		limit   int
		wantErr string
	}{
		{"raw", raw, 0, ""},
		{"gzip", gz(raw), 0, ""},
		{"gzip limit ok", gz(raw), len(raw), ""},
		{"raw limit ok", raw, len(raw), ""},
		{"gzip over limit", gz(raw), len(raw) - 1, "exceeds the limit of"},
		{"raw over limit", raw, 10, "exceeds the limit of 10 bytes"},
		{"empty", nil, 0, "empty profile"},
		{"truncated gzip", gz(raw)[:20], 0, "invalid gzip"},
		{"gzip magic only", []byte{0x1f, 0x8b}, 0, "invalid gzip header"},
		{"garbage", []byte{0xff, 0xff, 0xff}, 0, "invalid pprof protobuf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodePprof(tc.in, tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.TimeNanos != 1700000000000000000 || len(p.Sample) != 1 || p.StringTable[p.Function[1].Name] != "foo" {
				t.Fatalf("decoded profile differs: %v", p)
			}
		})
	}
}

func TestSizeErrorIs(t *testing.T) {
	raw, _ := sampleProfile().MarshalVT()
	_, err := DecodePprof(gz(raw), 5)
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want *SizeError wrapping ErrTooLarge, got %v", err)
	}
	if se.Limit != 5 || se.Size <= 5 {
		t.Fatalf("SizeError = %+v", se)
	}
}

func TestGunzip(t *testing.T) {
	in := []byte("hello hello hello")
	out, err := Gunzip(gz(in), 0)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("Gunzip = %q, %v", out, err)
	}
	out, err = Gunzip(in, 0)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("Gunzip(raw) = %q, %v", out, err)
	}
	if _, err := Gunzip(gz(in), 3); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
}

// TestCorpus decodes every corpus file: each either decodes or fails with a
// clean error, and the well-formed ones carry sample types.
func TestCorpus(t *testing.T) {
	files := loadCorpus(t)
	if files == nil {
		return
	}
	decoded := 0
	for _, f := range files {
		p, err := DecodePprof(f.data, 64<<20)
		if err != nil {
			t.Logf("%s: %v", f.name, err)
			continue
		}
		decoded++
		if len(p.SampleType) == 0 {
			t.Errorf("%s: no sample types", f.name)
		}
	}
	if decoded < len(files)/2 {
		t.Fatalf("only %d of %d corpus files decoded", decoded, len(files))
	}
}

// stdlib variant, for the benchmark comparison only.
var stdPool sync.Pool

func decodeStd(b []byte, limit int) (*googlev1.Profile, error) {
	data := b
	if IsGzip(b) {
		var zr *stdgzip.Reader
		if v := stdPool.Get(); v != nil {
			zr = v.(*stdgzip.Reader)
			if err := zr.Reset(bytes.NewReader(b)); err != nil {
				return nil, err
			}
		} else {
			var err error
			if zr, err = stdgzip.NewReader(bytes.NewReader(b)); err != nil {
				return nil, err
			}
		}
		defer stdPool.Put(zr)
		buf := bufPool.Get().(*bytes.Buffer)
		defer bufPool.Put(buf)
		buf.Reset()
		buf.Grow(8 * len(b))
		if _, err := buf.ReadFrom(io.LimitReader(zr, int64(limit)+1)); err != nil {
			return nil, err
		}
		if buf.Len() > limit {
			return nil, &SizeError{Limit: limit, Size: buf.Len()}
		}
		data = buf.Bytes()
	}
	p := new(googlev1.Profile)
	return p, p.UnmarshalVT(data)
}

// BenchmarkDecode decodes the whole corpus once per iteration with the
// klauspost gzip (what DecodePprof uses) and with the standard library.
// Reported: profiles/s and compressed MB/s (b.SetBytes = corpus bytes).
func BenchmarkDecode(b *testing.B) {
	files := loadCorpus(b)
	if files == nil {
		return
	}
	var good []corpusFile
	total := 0
	for _, f := range files {
		if _, err := DecodePprof(f.data, 64<<20); err == nil {
			good = append(good, f)
			total += len(f.data)
		}
	}
	for _, impl := range []struct {
		name string
		fn   func([]byte, int) (*googlev1.Profile, error)
	}{{"klauspost", DecodePprof}, {"stdlib", decodeStd}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(total))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for _, f := range good {
					if _, err := impl.fn(f.data, 64<<20); err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "profiles/s")
		})
	}
}

// BenchmarkGunzip isolates decompression (the part the gzip choice affects).
func BenchmarkGunzip(b *testing.B) {
	files := loadCorpus(b)
	if files == nil {
		return
	}
	var gzs [][]byte
	total := 0
	for _, f := range files {
		if IsGzip(f.data) {
			gzs = append(gzs, f.data)
			total += len(f.data)
		}
	}
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, g := range gzs {
				buf := bufPool.Get().(*bytes.Buffer)
				buf.Reset()
				if err := gunzipTo(buf, g, 64<<20); err != nil {
					b.Fatal(err)
				}
				bufPool.Put(buf)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, g := range gzs {
				var zr *stdgzip.Reader
				if v := stdPool.Get(); v != nil {
					zr = v.(*stdgzip.Reader)
					_ = zr.Reset(bytes.NewReader(g))
				} else {
					zr, _ = stdgzip.NewReader(bytes.NewReader(g))
				}
				buf := bufPool.Get().(*bytes.Buffer)
				buf.Reset()
				buf.Grow(8 * len(g))
				if _, err := buf.ReadFrom(zr); err != nil {
					b.Fatal(err)
				}
				bufPool.Put(buf)
				stdPool.Put(zr)
			}
		}
	})
}

func FuzzDecodePprof(f *testing.F) {
	raw, _ := sampleProfile().MarshalVT()
	f.Add(raw)
	f.Add(gz(raw))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePprof(b, 1<<20)
		if err != nil {
			if p != nil {
				t.Fatal("profile and error both returned")
			}
			return
		}
		// A decoded profile re-encodes and decodes to the same size.
		out, err := p.MarshalVT()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if len(out) == 0 {
			return // all fields default: nothing to compare (empty input is refused)
		}
		q, err := DecodePprof(out, 0)
		if err != nil {
			t.Fatalf("decode of re-marshalled profile: %v", err)
		}
		if q.SizeVT() != p.SizeVT() {
			t.Fatalf("round trip size %d != %d", q.SizeVT(), p.SizeVT())
		}
	})
}
