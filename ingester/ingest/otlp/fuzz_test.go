package otlp

import (
	"fmt"
	"os"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"

	"github.com/hearth-dev/hearth/ingester/validation"
)

// checkDecoded holds for anything Convert returns: every reference of every
// profile resolves, every sample has one value, every label name is valid.
func checkDecoded(t *testing.T, req *collectorv1.ExportProfilesServiceRequest) {
	out, err := Convert(req, now)
	if err != nil {
		return
	}
	for i, d := range out {
		if err := validProfile(d.Profile); err != nil {
			t.Fatalf("profile %d: %v", i, err)
		}
		for _, l := range d.Labels {
			if !validation.ValidLabelName(l.Name) {
				t.Fatalf("profile %d: label name %q", i, l.Name)
			}
		}
	}
}

func validProfile(p *googlev1.Profile) error {
	ns := int64(len(p.StringTable))
	str := func(i int64) bool { return i >= 0 && i < ns }
	if ns == 0 || p.StringTable[0] != "" || len(p.SampleType) != 1 || !str(p.SampleType[0].Type) || !str(p.SampleType[0].Unit) {
		return fmt.Errorf("bad string table or sample type")
	}
	for i, m := range p.Mapping {
		if m.Id != uint64(i+1) || !str(m.Filename) || !str(m.BuildId) {
			return fmt.Errorf("mapping %d", i)
		}
	}
	for i, f := range p.Function {
		if f.Id != uint64(i+1) || !str(f.Name) || !str(f.SystemName) || !str(f.Filename) {
			return fmt.Errorf("function %d", i)
		}
	}
	for i, l := range p.Location {
		if l.Id != uint64(i+1) || l.MappingId == 0 || l.MappingId > uint64(len(p.Mapping)) {
			return fmt.Errorf("location %d", i)
		}
		for _, ln := range l.Line {
			if ln.FunctionId == 0 || ln.FunctionId > uint64(len(p.Function)) {
				return fmt.Errorf("location %d line", i)
			}
		}
	}
	for i, s := range p.Sample {
		if len(s.Value) != 1 {
			return fmt.Errorf("sample %d has %d values", i, len(s.Value))
		}
		for _, id := range s.LocationId {
			if id == 0 || id > uint64(len(p.Location)) {
				return fmt.Errorf("sample %d location %d", i, id)
			}
		}
		for _, l := range s.Label {
			if !str(l.Key) || !str(l.Str) {
				return fmt.Errorf("sample %d label", i)
			}
		}
	}
	return nil
}

// FuzzDecodeProto: any body decodes and converts without a panic, into
// profiles whose references all resolve. Seeds: testdata/fuzz/FuzzDecodeProto
// and the committed request.
func FuzzDecodeProto(f *testing.F) {
	if b, err := os.ReadFile(testdataFile); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeProto(body)
		if err != nil {
			return
		}
		checkDecoded(t, req)
	})
}

// FuzzDecodeJSON: the same for JSON bodies. Seeds: testdata/fuzz/FuzzDecodeJSON.
func FuzzDecodeJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeJSON(body)
		if err != nil {
			return
		}
		checkDecoded(t, req)
	})
}
