package otlp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// pyroscopeFile reads a file of Pyroscope v1.18.0 from HEARTH_PYROSCOPE_REPO
// (a checkout, or a bare mirror read with git show). Its inputs are AGPL
// test data: read where they are, never committed here.
func pyroscopeFile(t testing.TB, rel string) []byte {
	t.Helper()
	repo := os.Getenv("HEARTH_PYROSCOPE_REPO")
	if repo == "" {
		t.Skip("Pyroscope's OTLP testdata: HEARTH_PYROSCOPE_REPO unset")
	}
	if b, err := os.ReadFile(filepath.Join(repo, rel)); err == nil {
		return b
	}
	out, err := exec.Command("git", "--git-dir="+repo, "show", "v1.18.0:"+rel).Output()
	if err != nil {
		t.Fatalf("reading %s from %s: %v", rel, repo, err)
	}
	return out
}

// compactProfile is the JSON Pyroscope's integration suite compares merged
// profiles in (its expected *.out.json): per sample the locations
// (address, "name[system name]@file:line" per line, mapping as
// "start-limit@offset file(build id)") and the values joined by commas.
type compactProfile struct {
	SampleTypes []struct {
		Type string `json:"type"`
		Unit string `json:"unit"`
	} `json:"sample_types"`
	Samples []compactSample `json:"samples"`
	Period  string          `json:"period,omitempty"`
}

type compactSample struct {
	Locations []compactLocation `json:"locations,omitempty"`
	Values    string            `json:"values"`
	Labels    string            `json:"labels,omitempty"`
}

type compactLocation struct {
	Address string   `json:"address,omitempty"`
	Lines   []string `json:"lines,omitempty"`
	Mapping string   `json:"mapping,omitempty"`
}

// compact renders a pprof profile in that form.
func compact(p *googlev1.Profile) compactProfile {
	var out compactProfile
	out.Period = fmt.Sprint(p.Period)
	for _, st := range p.SampleType {
		out.SampleTypes = append(out.SampleTypes, struct {
			Type string `json:"type"`
			Unit string `json:"unit"`
		}{p.StringTable[st.Type], p.StringTable[st.Unit]})
	}
	fns := map[uint64]*googlev1.Function{}
	for _, f := range p.Function {
		fns[f.Id] = f
	}
	maps := map[uint64]*googlev1.Mapping{}
	for _, m := range p.Mapping {
		maps[m.Id] = m
	}
	locs := map[uint64]*googlev1.Location{}
	for _, l := range p.Location {
		locs[l.Id] = l
	}
	for _, s := range p.Sample {
		var cs compactSample
		vals := make([]string, len(s.Value))
		for i, v := range s.Value {
			vals[i] = fmt.Sprint(v)
		}
		cs.Values = strings.Join(vals, ",")
		for _, id := range s.LocationId {
			l := locs[id]
			cl := compactLocation{Address: fmt.Sprintf("0x%x", l.Address)}
			if m := maps[l.MappingId]; m != nil {
				cl.Mapping = fmt.Sprintf("0x%x-0x%x@0x%x %s(%s)", m.MemoryStart, m.MemoryLimit, m.FileOffset, p.StringTable[m.Filename], p.StringTable[m.BuildId])
			}
			for _, ln := range l.Line {
				f := fns[ln.FunctionId]
				cl.Lines = append(cl.Lines, fmt.Sprintf("%s[%s]@%s:%d", p.StringTable[f.Name], p.StringTable[f.SystemName], p.StringTable[f.Filename], ln.Line))
			}
			cs.Locations = append(cs.Locations, cl)
		}
		var labels []string
		for _, l := range s.Label {
			labels = append(labels, p.StringTable[l.Key]+"="+p.StringTable[l.Str])
		}
		sort.Strings(labels)
		cs.Labels = strings.Join(labels, ",")
		out.Samples = append(out.Samples, cs)
	}
	return out
}

// canonicalSamples is the samples as sorted JSON lines: order-free equality.
func canonicalSamples(t *testing.T, ss []compactSample) string {
	lines := make([]string, len(ss))
	for i, s := range ss {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = string(b)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestPyroscopeOTLPTestdata runs Pyroscope v1.18's OTLP integration cases
// (pkg/test/integration/ingest_otlp_test.go) against a real Hearth: the
// eBPF profiler's request over gRPC, HTTP protobuf and HTTP JSON, merged
// back as process_cpu of service_name unknown_service and compared with
// Pyroscope's expected output; the corrupted request refused with
// InvalidArgument.
func TestPyroscopeOTLPTestdata(t *testing.T) {
	const dir = "pkg/test/integration/testdata/"
	bin := pyroscopeFile(t, dir+"otel-ebpf-profile.pb.bin")
	var want compactProfile
	if err := json.Unmarshal(pyroscopeFile(t, dir+"otel-ebpf-profile.out.json"), &want); err != nil {
		t.Fatal(err)
	}
	corrupted := pyroscopeFile(t, dir+"otel-ebpf-profile-corrupted.pb.bin")

	// Its profiles are from September 2025: no age limit on writes or reads.
	p := startIngester(t, "-limits.reject-older-than=0", "-querier.max-query-lookback=0")
	load := func(run string) *collectorv1.ExportProfilesServiceRequest {
		req, err := DecodeProto(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, rp := range req.ResourceProfiles {
			for _, sp := range rp.ScopeProfiles {
				sp.Scope.Attributes = append(sp.Scope.Attributes, kv("test_run_no", strVal(run)))
			}
		}
		return req
	}
	send := map[string]func(req *collectorv1.ExportProfilesServiceRequest){
		"grpc": func(req *collectorv1.ExportProfilesServiceRequest) {
			ctx, cancel := exportCtx("")
			defer cancel()
			if _, err := grpcClient(t, p).Export(ctx, req); err != nil {
				t.Fatal(err)
			}
		},
		"http_protobuf": func(req *collectorv1.ExportProfilesServiceRequest) {
			b, _ := proto.Marshal(req)
			if code, body := postOTLP(t, p, "application/x-protobuf", b, nil); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		},
		"http_json": func(req *collectorv1.ExportProfilesServiceRequest) {
			b, _ := protojson.Marshal(req)
			if code, body := postOTLP(t, p, "application/json", b, nil); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		},
	}
	for run, f := range send {
		t.Run(run, func(t *testing.T) {
			f(load(run))
			// The profiles are from 2025: a window around their time.
			start, end := int64(1758272000000), int64(1758274000000)
			got := mergeProfileRange(t, p, typeCPU, fmt.Sprintf(`{service_name="unknown_service", test_run_no=%q}`, run), "", start, end)
			if len(got.Sample) == 0 || len(got.Function) == 0 || len(got.Mapping) == 0 || len(got.Location) == 0 {
				t.Fatalf("empty merge: %d samples, %d functions, %d mappings, %d locations", len(got.Sample), len(got.Function), len(got.Mapping), len(got.Location))
			}
			c := compact(got)
			if fmt.Sprint(c.SampleTypes) != fmt.Sprint(want.SampleTypes) {
				t.Errorf("sample types %v, Pyroscope %v", c.SampleTypes, want.SampleTypes)
			}
			if g, w := canonicalSamples(t, c.Samples), canonicalSamples(t, want.Samples); g != w {
				t.Errorf("merged samples differ from Pyroscope's expected output\ngot:\n%s\nwant:\n%s", g, w)
			}
			if c.Period != want.Period {
				t.Logf("period %s, Pyroscope's merge answers %s", c.Period, want.Period)
			}
		})
	}
	t.Run("corrupted", func(t *testing.T) {
		req, err := DecodeProto(corrupted)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := exportCtx("")
		defer cancel()
		_, err = grpcClient(t, p).Export(ctx, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "stack index 1000000000") {
			t.Fatalf("got %v, want InvalidArgument naming stack index 1000000000", err)
		}
	})
	t.Run("json files", func(t *testing.T) {
		// Pyroscope's suite does not post its *.pb.json files; they decode
		// (or not) the same here as with protojson there.
		for _, f := range []string{"otel-ebpf-profile.pb.json", "otel-ebpf-profile-corrupted.pb.json"} {
			_, err := DecodeJSON(pyroscopeFile(t, dir+f))
			t.Logf("%s: %v", f, err)
		}
	})
}
