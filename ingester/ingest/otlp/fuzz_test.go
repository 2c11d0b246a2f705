package otlp

import (
	"fmt"
	"os"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	profilesv1 "go.opentelemetry.io/proto/otlp/profiles/v1development"

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

// FuzzConvertIndices: the seed requests with their references rewritten by
// the fuzzer (each 5 bytes: which reference, then its new value), so that
// Convert meets every kind of dangling, negative and shared index; the
// parsers above rarely produce those from bytes.
func FuzzConvertIndices(f *testing.F) {
	f.Add(byte(0), []byte{})
	f.Add(byte(1), []byte{0, 0xff, 0xff, 0xff, 0xff, 3, 5, 0, 0, 0})
	f.Add(byte(2), []byte{7, 1, 0, 0, 0, 9, 2, 0, 0, 0, 4, 0x80, 0, 0, 0})
	f.Fuzz(func(t *testing.T, which byte, edits []byte) {
		names := []string{"cpu", "offcpu", "split", "corrupt"}
		req := seedRequests()[names[int(which)%len(names)]]
		d := req.Dictionary
		p := req.ResourceProfiles[0].ScopeProfiles[0].Profiles[0]
		for len(edits) >= 5 {
			v := int32(uint32(edits[1]) | uint32(edits[2])<<8 | uint32(edits[3])<<16 | uint32(edits[4])<<24)
			k := int(edits[0])
			edits = edits[5:]
			pick := func(n int) int { return (k / 16) % max(n, 1) }
			switch k % 16 {
			case 0:
				if len(p.Samples) > 0 {
					p.Samples[pick(len(p.Samples))].StackIndex = v
				}
			case 1:
				if s := d.StackTable[pick(len(d.StackTable))]; len(s.LocationIndices) > 0 {
					s.LocationIndices[0] = v
				}
			case 2:
				d.LocationTable[pick(len(d.LocationTable))].MappingIndex = v
			case 3:
				if l := d.LocationTable[pick(len(d.LocationTable))]; len(l.Lines) > 0 {
					l.Lines[0].FunctionIndex = v
				}
			case 4:
				d.FunctionTable[pick(len(d.FunctionTable))].NameStrindex = v
			case 5:
				d.FunctionTable[pick(len(d.FunctionTable))].FilenameStrindex = v
			case 6:
				d.MappingTable[pick(len(d.MappingTable))].FilenameStrindex = v
			case 7:
				d.AttributeTable[pick(len(d.AttributeTable))].KeyStrindex = v
			case 8:
				if len(p.Samples) > 0 {
					s := p.Samples[pick(len(p.Samples))]
					s.AttributeIndices = append(s.AttributeIndices, v)
				}
			case 9:
				if len(p.Samples) > 0 {
					p.Samples[pick(len(p.Samples))].LinkIndex = v
				}
			case 10:
				p.SampleType.TypeStrindex = v
			case 11:
				p.Period = int64(v)
			case 12:
				if len(p.Samples) > 0 {
					s := p.Samples[pick(len(p.Samples))]
					s.Values = append(s.Values, int64(v))
				}
			case 13:
				m := d.MappingTable[pick(len(d.MappingTable))]
				m.AttributeIndices = append(m.AttributeIndices, v)
			case 14:
				d.LocationTable[pick(len(d.LocationTable))].Lines = nil
			case 15:
				d.StackTable = append(d.StackTable, &profilesv1.Stack{LocationIndices: []int32{v, v / 2}})
			}
		}
		checkDecoded(t, req)
	})
}
