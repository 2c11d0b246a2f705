package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/internal/testutil"
)

const (
	typeCPU    = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	typeOffCPU = "off_cpu:events:nanoseconds::"
)

// startIngester runs a real `hearth ingester` on loopback.
func startIngester(t *testing.T, args ...string) *testutil.Process {
	t.Helper()
	return testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn"}, args...)...)
}

// grpcClient is the OTLP generated client over a real grpc-go connection.
func grpcClient(t testing.TB, p *testutil.Process) collectorv1.ProfilesServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", p.Port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return collectorv1.NewProfilesServiceClient(conn)
}

func exportCtx(tenant string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if tenant != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "X-Scope-OrgID", tenant)
	}
	return ctx, cancel
}

// postOTLP posts a request body to /v1development/profiles.
func postOTLP(t *testing.T, p *testutil.Process, contentType string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	return postOTLPAt(t, p, HTTPPath, contentType, body, hdr)
}

// postOTLPAt posts to a given path.
func postOTLPAt(t *testing.T, p *testutil.Process, path, contentType string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// setRun sets the scope attribute test.run on every scope (so one process
// holds one copy per transport, told apart by the label test_run).
func setRun(req *collectorv1.ExportProfilesServiceRequest, run string) {
	for _, rp := range req.ResourceProfiles {
		for _, sp := range rp.ScopeProfiles {
			if sp.Scope == nil {
				sp.Scope = &commonv1.InstrumentationScope{}
			}
			sp.Scope.Attributes = slices.DeleteFunc(sp.Scope.Attributes, func(a *commonv1.KeyValue) bool { return a.Key == "test.run" })
			sp.Scope.Attributes = append(sp.Scope.Attributes, kv("test.run", strVal(run)))
		}
	}
}

// stacks is a profile as stack → value; a stack is its frames leaf first,
// a frame its functions (inlined ones joined by "/") or, unsymbolized,
// "file(build id)[start-limit]@address".
type stacks map[string]int64

func frameOf(names []string, file, buildID string, start, limit, addr uint64) string {
	if len(names) > 0 {
		return strings.Join(names, "/")
	}
	return fmt.Sprintf("%s(%s)[%#x-%#x]@%#x", file, buildID, start, limit, addr)
}

func (s stacks) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, s[k])
	}
	return b.String()
}

// pprofStacks reads a pprof profile (the querier's answer) as stacks.
func pprofStacks(p *googlev1.Profile) stacks {
	fns := map[uint64]*googlev1.Function{}
	for _, f := range p.Function {
		fns[f.Id] = f
	}
	maps := map[uint64]*googlev1.Mapping{}
	for _, m := range p.Mapping {
		maps[m.Id] = m
	}
	locs := map[uint64]string{}
	for _, l := range p.Location {
		var names []string
		for _, ln := range l.Line {
			names = append(names, p.StringTable[fns[ln.FunctionId].Name])
		}
		m := maps[l.MappingId]
		if m == nil {
			m = &googlev1.Mapping{}
		}
		locs[l.Id] = frameOf(names, p.StringTable[m.Filename], p.StringTable[m.BuildId], m.MemoryStart, m.MemoryLimit, l.Address)
	}
	out := stacks{}
	for _, s := range p.Sample {
		fr := make([]string, len(s.LocationId))
		for i, id := range s.LocationId {
			fr[i] = locs[id]
		}
		out[strings.Join(fr, ";")] += s.Value[0]
	}
	return out
}

// seriesKey names the stored series an OTLP sample belongs to.
type seriesKey struct{ profileType, service string }

// expected computes, straight from a request and independently of Convert,
// what the querier must answer per profile type and service: CPU samples
// (samples:count, period cpu:nanoseconds) count their timestamps times the
// period, off-CPU ones sum their values.
func expected(t *testing.T, req *collectorv1.ExportProfilesServiceRequest) map[seriesKey]stacks {
	t.Helper()
	d := req.Dictionary
	str := func(i int32) string { return d.StringTable[i] }
	attr := func(idx []int32, key string) string {
		for _, i := range idx {
			if a := d.AttributeTable[i]; str(a.KeyStrindex) == key {
				return a.Value.GetStringValue()
			}
		}
		return ""
	}
	frame := func(li int32) string {
		l := d.LocationTable[li]
		m := d.MappingTable[l.MappingIndex]
		var names []string
		for _, ln := range l.Lines {
			names = append(names, str(d.FunctionTable[ln.FunctionIndex].NameStrindex))
		}
		return frameOf(names, str(m.FilenameStrindex), attr(m.AttributeIndices, attrBuildID), m.MemoryStart, m.MemoryLimit, l.Address)
	}
	out := map[seriesKey]stacks{}
	for _, rp := range req.ResourceProfiles {
		svc := "unknown_service"
		for _, a := range rp.Resource.GetAttributes() {
			switch a.Key {
			case "service.name":
				svc = a.Value.GetStringValue()
			case "process.executable.name":
				if svc == "unknown_service" {
					svc += ":" + a.Value.GetStringValue()
				}
			}
		}
		for _, sp := range rp.ScopeProfiles {
			for _, p := range sp.Profiles {
				typ := str(p.SampleType.TypeStrindex) + ":" + str(p.SampleType.UnitStrindex)
				for _, s := range p.Samples {
					var key seriesKey
					var v int64
					switch typ {
					case "samples:count":
						key.profileType = typeCPU
						v = int64(len(s.TimestampsUnixNano))
						if len(s.Values) > 0 {
							v = s.Values[0]
						}
						v *= p.Period
					case "events:nanoseconds":
						key.profileType = typeOffCPU
						for _, x := range s.Values {
							v += x
						}
					default:
						t.Fatalf("no expectation for sample type %s", typ)
					}
					key.service = svc
					if s := attr(s.AttributeIndices, "service.name"); s != "" {
						key.service = s
					}
					var fr []string
					for _, li := range d.StackTable[s.StackIndex].LocationIndices {
						fr = append(fr, frame(li))
					}
					if out[key] == nil {
						out[key] = stacks{}
					}
					out[key][strings.Join(fr, ";")] += v
				}
			}
		}
	}
	return out
}

// querier is the querier.v1 client of a process.
func querier(p *testutil.Process) querierv1connect.QuerierServiceClient {
	return querierv1connect.NewQuerierServiceClient(http.DefaultClient, p.URL)
}

func window() (int64, int64) {
	now := time.Now()
	return now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli()
}

func mergeProfile(t *testing.T, p *testutil.Process, profileType, selector, tenant string) *googlev1.Profile {
	t.Helper()
	start, end := window()
	return mergeProfileRange(t, p, profileType, selector, tenant, start, end)
}

// mergeProfileRange is mergeProfile over a window (Unix milliseconds).
func mergeProfileRange(t *testing.T, p *testutil.Process, profileType, selector, tenant string, start, end int64) *googlev1.Profile {
	t.Helper()
	req := connect.NewRequest(&querierv1.SelectMergeProfileRequest{ProfileTypeID: profileType, LabelSelector: selector, Start: start, End: end})
	if tenant != "" {
		req.Header().Set("X-Scope-OrgID", tenant)
	}
	//lint:ignore SA1019 the call Pyroscope's own OTLP integration test makes
	resp, err := querier(p).SelectMergeProfile(context.Background(), req)
	if err != nil {
		t.Fatalf("SelectMergeProfile %s %s: %v", profileType, selector, err)
	}
	return resp.Msg
}

// checkStored compares what the querier answers for run with what the
// request holds, series by series.
func checkStored(t *testing.T, p *testutil.Process, req *collectorv1.ExportProfilesServiceRequest, run, tenant string) {
	t.Helper()
	want := expected(t, req)
	if len(want) < 3 {
		t.Fatalf("the request gives %d series, want at least 3", len(want))
	}
	for key, ws := range want {
		sel := fmt.Sprintf(`{service_name=%q, test_run=%q}`, key.service, run)
		got := pprofStacks(mergeProfile(t, p, key.profileType, sel, tenant))
		if got.String() != ws.String() {
			t.Errorf("%s %s: stored stacks differ\ngot:\n%s\nwant:\n%s", key.profileType, sel, got, ws)
		}
	}
}

// seriesLabels lists the label sets stored for a selector.
func seriesLabels(t *testing.T, p *testutil.Process, selector string) []map[string]string {
	t.Helper()
	start, end := window()
	resp, err := querier(p).Series(context.Background(), connect.NewRequest(&querierv1.SeriesRequest{Matchers: []string{selector}, Start: start, End: end}))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, ls := range resp.Msg.LabelsSet {
		m := map[string]string{}
		for _, l := range ls.Labels {
			m[l.Name] = l.Value
		}
		out = append(out, m)
	}
	return out
}

// TestExportStoresWhatWasSent pushes the committed request over gRPC (the
// OTLP generated client on grpc-go), OTLP/HTTP protobuf (plain and gzipped)
// and OTLP/HTTP JSON to a real ingester, and reads every series back with
// the querier: same stacks and values as sent, unsymbolized frames with
// their mapping and address.
func TestExportStoresWhatWasSent(t *testing.T) {
	p := startIngester(t)
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
		"http_protobuf_gzip": func(req *collectorv1.ExportProfilesServiceRequest) {
			b, _ := proto.Marshal(req)
			if code, body := postOTLP(t, p, "application/protobuf", gzipped(t, b), map[string]string{"Content-Encoding": "gzip"}); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		},
		// Pyroscope serves both paths with one handler: each protocol works on either.
		"grpc_at_http_path": func(req *collectorv1.ExportProfilesServiceRequest) {
			ctx, cancel := exportCtx("")
			defer cancel()
			conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", p.Port), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Invoke(ctx, HTTPPath, req, &collectorv1.ExportProfilesServiceResponse{}); err != nil {
				t.Fatal(err)
			}
		},
		"http_protobuf_at_grpc_path": func(req *collectorv1.ExportProfilesServiceRequest) {
			b, _ := proto.Marshal(req)
			if code, body := postOTLPAt(t, p, ExportProcedure, "application/x-protobuf", b, nil); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		},
		"http_json": func(req *collectorv1.ExportProfilesServiceRequest) {
			b, _ := protojson.Marshal(req)
			code, body := postOTLP(t, p, "application/json", b, nil)
			if code != 200 || strings.TrimSpace(body) != "{}" {
				t.Fatalf("%d %q", code, body)
			}
		},
	}
	for run, f := range send {
		t.Run(run, func(t *testing.T) {
			req := loadTestdata(t)
			setRun(req, run)
			f(req)
			checkStored(t, p, req, run, "")
		})
	}

	t.Run("labels", func(t *testing.T) {
		sets := seriesLabels(t, p, `{test_run="grpc"}`)
		services := map[string]bool{}
		for _, ls := range sets {
			services[ls["service_name"]] = true
			for name := range ls {
				if strings.Contains(name, ".") {
					t.Errorf("label %q is not sanitized: %v", name, ls)
				}
			}
			for _, absent := range []string{"process_pid", "container_id", "thread_id", "span_id", "__delta__", "__otel__"} {
				if _, ok := ls[absent]; ok {
					t.Errorf("label %s is stored (Pyroscope keeps string attributes only, and span_id per sample): %v", absent, ls)
				}
			}
			if ls["service_name"] == "checkout" {
				want := map[string]string{"deployment_environment": "test", "host_name": "node-1", "test_run": "grpc"}
				for k, v := range want {
					if ls[k] != v {
						t.Errorf("%s=%q, want %q: %v", k, ls[k], v, ls)
					}
				}
				if ls["__name__"] == "process_cpu" && ls["thread_name"] == "" {
					t.Errorf("the CPU series has no thread_name (sample attribute thread.name): %v", ls)
				}
			}
		}
		for _, s := range []string{"checkout", "unknown_service:worker", "billing"} {
			if !services[s] {
				t.Errorf("no series of service_name %q; got %v", s, services)
			}
		}
	})

	t.Run("span", func(t *testing.T) {
		start, end := window()
		req := loadTestdata(t)
		want := int64(0)
		d := req.Dictionary
		for _, s := range req.ResourceProfiles[0].ScopeProfiles[0].Profiles[0].Samples {
			if s.LinkIndex != 0 && strings.HasSuffix(fmt.Sprintf("%x", d.LinkTable[s.LinkIndex].SpanId), "01") {
				want += int64(len(s.TimestampsUnixNano)) * req.ResourceProfiles[0].ScopeProfiles[0].Profiles[0].Period
			}
		}
		if want == 0 {
			t.Skip("the committed profile has no sample with span 0102030405060701")
		}
		//lint:ignore SA1019 still served, and the simplest span query
		resp, err := querier(p).SelectMergeSpanProfile(context.Background(), connect.NewRequest(&querierv1.SelectMergeSpanProfileRequest{
			ProfileTypeID: typeCPU, LabelSelector: `{test_run="grpc"}`, SpanSelector: []string{"0102030405060701"}, Start: start, End: end,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Msg.Flamegraph.GetTotal(); got != want {
			t.Fatalf("span 0102030405060701: total %d, want %d", got, want)
		}
	})
}

// corrupt is the committed request with one sample's stack index out of
// range (as Pyroscope's otel-ebpf-profile-corrupted.pb.bin).
func corrupt(t *testing.T) *collectorv1.ExportProfilesServiceRequest {
	req := loadTestdata(t)
	req.ResourceProfiles[1].ScopeProfiles[0].Profiles[0].Samples[0].StackIndex = 1_000_000_000
	return req
}

// TestBadInputRefused: a request that does not decode or convert is refused
// whole, with InvalidArgument (gRPC) or 400 (HTTP), and nothing of it is
// stored; other content types are 415.
func TestBadInputRefused(t *testing.T) {
	p := startIngester(t)

	t.Run("grpc", func(t *testing.T) {
		req := corrupt(t)
		setRun(req, "bad_grpc")
		ctx, cancel := exportCtx("")
		defer cancel()
		_, err := grpcClient(t, p).Export(ctx, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "stack index 1000000000") {
			t.Fatalf("got %v, want InvalidArgument naming stack index 1000000000", err)
		}
		ctx2, cancel2 := exportCtx("")
		defer cancel2()
		_, err = grpcClient(t, p).Export(ctx2, &collectorv1.ExportProfilesServiceRequest{})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "dictionary") {
			t.Fatalf("an empty request: got %v, want InvalidArgument (missing dictionary)", err)
		}
	})

	good, _ := proto.Marshal(loadTestdata(t))
	bad := corrupt(t)
	setRun(bad, "bad_http")
	badProto, _ := proto.Marshal(bad)
	badJSON, _ := protojson.Marshal(bad)
	for _, c := range []struct {
		name, contentType string
		body              []byte
		want              int
		says              string
	}{
		{"protobuf that does not convert", "application/x-protobuf", badProto, 400, "stack index 1000000000"},
		{"JSON that does not convert", "application/json", badJSON, 400, "stack index 1000000000"},
		{"truncated protobuf", "application/x-protobuf", good[:len(good)/2], 400, "protobuf"},
		{"not JSON", "application/json", []byte(`{"resourceProfiles": [`), 400, "JSON"},
		{"an unknown JSON field", "application/json", []byte(`{"resourceProfile": []}`), 400, "JSON"},
		{"another content type", "text/plain", good, 415, "Content-Type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := postOTLP(t, p, c.contentType, c.body, nil)
			if code != c.want || !strings.Contains(body, c.says) {
				t.Fatalf("got %d %q, want %d mentioning %q", code, body, c.want, c.says)
			}
		})
	}
	t.Run("not gzip", func(t *testing.T) {
		code, body := postOTLP(t, p, "application/x-protobuf", good, map[string]string{"Content-Encoding": "gzip"})
		if code != 400 {
			t.Fatalf("got %d %q, want 400", code, body)
		}
	})

	t.Run("nothing stored", func(t *testing.T) {
		// The corrupt requests' other profiles were valid: none may be stored.
		if sets := seriesLabels(t, p, `{test_run=~"bad_.*"}`); len(sets) != 0 {
			t.Fatalf("a refused request left series: %v", sets)
		}
	})
}

// TestTenants: with multitenancy the tenant comes from X-Scope-OrgID (gRPC
// metadata or HTTP header); without it gRPC answers Unauthenticated and HTTP
// 401, and a tenant sees only its own profiles.
func TestTenants(t *testing.T) {
	p := startIngester(t, "-auth.multitenancy-enabled")
	req := loadTestdata(t)
	setRun(req, "tenants")

	ctx, cancel := exportCtx("")
	defer cancel()
	if _, err := grpcClient(t, p).Export(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC without a tenant: %v, want Unauthenticated", err)
	}
	b, _ := proto.Marshal(req)
	if code, body := postOTLP(t, p, "application/x-protobuf", b, nil); code != http.StatusUnauthorized {
		t.Fatalf("HTTP without a tenant: %d %s, want 401", code, body)
	}

	ctxA, cancelA := exportCtx("team-a")
	defer cancelA()
	if _, err := grpcClient(t, p).Export(ctxA, req); err != nil {
		t.Fatal(err)
	}
	checkStored(t, p, req, "tenants", "team-a")
	if code, body := postOTLP(t, p, "application/x-protobuf", b, map[string]string{"X-Scope-OrgID": "team-b"}); code != 200 {
		t.Fatalf("HTTP team-b: %d %s", code, body)
	}
	checkStored(t, p, req, "tenants", "team-b")

	if got := mergeProfile(t, p, typeCPU, `{test_run="tenants"}`, "team-c"); len(got.Sample) != 0 {
		t.Fatalf("team-c sees %d samples of the others", len(got.Sample))
	}
}

// TestValidationLimitsApply: the push limits hold for OTLP profiles as for
// push.v1 (here the label count), with InvalidArgument / 400.
func TestValidationLimitsApply(t *testing.T) {
	p := startIngester(t, "-limits.max-label-names-per-series=3")
	req := loadTestdata(t)
	setRun(req, "limits")
	ctx, cancel := exportCtx("")
	defer cancel()
	_, err := grpcClient(t, p).Export(ctx, req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max-label-names-per-series") {
		t.Fatalf("got %v, want InvalidArgument naming limits.max-label-names-per-series", err)
	}
	b, _ := proto.Marshal(req)
	if code, body := postOTLP(t, p, "application/x-protobuf", b, nil); code != 400 || !strings.Contains(body, "max-label-names-per-series") {
		t.Fatalf("HTTP: %d %s", code, body)
	}
}

// sampleCount is how many samples a request carries (benchmark figures).
func sampleCount(req *collectorv1.ExportProfilesServiceRequest) int {
	n := 0
	for _, rp := range req.ResourceProfiles {
		for _, sp := range rp.ScopeProfiles {
			for _, p := range sp.Profiles {
				n += len(p.Samples)
			}
		}
	}
	return n
}

// TestProfileSizeLimitApplies: limits.max-profile-size-bytes holds for each
// converted profile.
func TestProfileSizeLimitApplies(t *testing.T) {
	p := startIngester(t, "-limits.max-profile-size-bytes=2000")
	req := loadTestdata(t)
	ctx, cancel := exportCtx("")
	defer cancel()
	_, err := grpcClient(t, p).Export(ctx, req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max-profile-size-bytes") {
		t.Fatalf("got %v, want InvalidArgument naming limits.max-profile-size-bytes", err)
	}
}
