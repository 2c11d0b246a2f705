package load

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
)

// fakePusher is the client's peer in these tests: it decodes what arrives
// and records it.
type fakePusher struct {
	mu       sync.Mutex
	received map[string]received // by profile ID
	tenants  map[string]int
	protos   map[int]int
	reject   string // service_name to answer InvalidArgument for
	bad      []string
}

type received struct {
	labels    map[string]string
	timeNanos int64
	samples   int
}

func (f *fakePusher) Push(ctx context.Context, req *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tenants[req.Header().Get("X-Scope-OrgID")]++
	for _, s := range req.Msg.Series {
		ls := map[string]string{}
		for _, l := range s.Labels {
			ls[l.Name] = l.Value
		}
		if ls["service_name"] == f.reject {
			return nil, connect.NewError(connect.CodeInvalidArgument, nil)
		}
		for _, smp := range s.Samples {
			p, err := pprofdec.DecodePprof(smp.RawProfile, 64<<20)
			if err != nil {
				f.bad = append(f.bad, err.Error())
				return nil, connect.NewError(connect.CodeInvalidArgument, err)
			}
			if _, dup := f.received[smp.ID]; dup {
				f.bad = append(f.bad, "duplicate ID "+smp.ID)
			}
			f.received[smp.ID] = received{labels: ls, timeNanos: p.TimeNanos, samples: len(p.Sample)}
		}
	}
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

func newServer(t *testing.T, f *fakePusher, h2c bool) *httptest.Server {
	f.received, f.tenants, f.protos = map[string]received{}, map[string]int{}, map[int]int{}
	path, h := pushv1connect.NewPusherServiceHandler(f)
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.protos[r.ProtoMajor]++
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv := httptest.NewUnstartedServer(mux)
	if h2c {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = &p
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func testProfile(t testing.TB, timeNanos int64) []byte {
	p := &googlev1.Profile{
		StringTable: []string{"", "samples", "count", "cpu", "nanoseconds", "main", "foo"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}, {Type: 3, Unit: 4}},
		PeriodType:  &googlev1.ValueType{Type: 3, Unit: 4},
		Period:      10000000,
		Function:    []*googlev1.Function{{Id: 1, Name: 5}, {Id: 2, Name: 6}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{2, 1}, Value: []int64{3, 30000000}}, {LocationId: []uint64{1}, Value: []int64{1, 10000000}}},
		TimeNanos:   timeNanos,
	}
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testDir(t *testing.T) string {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "app-a.pb.gz"), gzipBytes(testProfile(t, 1)), 0o644))
	must(os.WriteFile(filepath.Join(dir, "app-b.pprof"), testProfile(t, 0), 0o644)) // not gzipped
	must(os.WriteFile(filepath.Join(dir, "garbage.pb.gz"), []byte{0x1f, 0x8b, 1, 2, 3}, 0o644))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	return dir
}

func TestTimeMember(t *testing.T) {
	f := &file{gz: gzipBytes(testProfile(t, 0))}
	body := f.body(1234567890123456789)
	// Standard library gzip (multistream by default).
	zr, err := stdgzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var p googlev1.Profile
	if err := p.UnmarshalVT(raw); err != nil {
		t.Fatal(err)
	}
	if p.TimeNanos != 1234567890123456789 || len(p.Sample) != 2 {
		t.Fatalf("stdlib: time %d samples %d", p.TimeNanos, len(p.Sample))
	}
	// pprofdec (klauspost).
	q, err := pprofdec.DecodePprof(body, 0)
	if err != nil || q.TimeNanos != 1234567890123456789 {
		t.Fatalf("pprofdec: %v %v", q, err)
	}
}

func TestServiceName(t *testing.T) {
	for in, want := range map[string]string{"cpu.pb.gz": "cpu", "go.cpu.labels.pprof": "go.cpu.labels", "heap-js.pprof": "heap-js", ".gz": ".gz", "x": "x"} {
		if got := ServiceName(in); got != want {
			t.Errorf("ServiceName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRun(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "http1"
		if h2c {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			f := &fakePusher{}
			srv := newServer(t, f, h2c)
			var out bytes.Buffer
			var log AckLog
			now := time.Unix(1700000000, 0)
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Millisecond); return now }
			s, err := Run(context.Background(), Config{
				URL: srv.URL, Dir: testDir(t), Workers: 3, MaxPushes: 40, Series: 4, Tenant: "t1",
				H2C: h2c, Out: &out, Acked: log.Record, Now: clock,
			})
			if err != nil {
				t.Fatal(err)
			}
			if s.Pushes != 40 || s.Profiles != 40 || s.Errors != 0 || s.Files != 2 || len(s.Skipped) != 1 || s.Bytes == 0 {
				t.Fatalf("summary %+v", s)
			}
			if !strings.Contains(out.String(), "warning: skipping garbage.pb.gz") || strings.Count(out.String(), "warning") != 1 {
				t.Fatalf("output %q", out.String())
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.bad) > 0 {
				t.Fatalf("server saw: %v", f.bad)
			}
			if len(f.received) != 40 || f.tenants["t1"] != 40 {
				t.Fatalf("server received %d, tenants %v", len(f.received), f.tenants)
			}
			wantProto := 1
			if h2c {
				wantProto = 2
			}
			if f.protos[wantProto] != 40 {
				t.Fatalf("protocols %v, want all HTTP/%d", f.protos, wantProto)
			}
			acks := log.Acks()
			if len(acks) != 40 {
				t.Fatalf("%d acks", len(acks))
			}
			instances := map[string]bool{}
			for _, a := range acks {
				r, ok := f.received[a.ID]
				if !ok {
					t.Fatalf("ack %s not received", a.ID)
				}
				if r.timeNanos != a.TimeNanos || r.timeNanos <= 1700000000e9 {
					t.Fatalf("time %d, ack says %d", r.timeNanos, a.TimeNanos)
				}
				if r.labels["__name__"] != "process_cpu" || (r.labels["service_name"] != "app-a" && r.labels["service_name"] != "app-b") || r.samples != 2 {
					t.Fatalf("received %+v", r)
				}
				instances[r.labels["instance"]] = true
			}
			if len(instances) != 4 {
				t.Fatalf("instances %v, want 4", instances)
			}
			if s.P50 <= 0 || s.P99 < s.P50 || s.Max < s.P99 {
				t.Fatalf("latencies %v %v %v", s.P50, s.P99, s.Max)
			}
		})
	}
}

// TestRunSeriesPerPush: each push carries SeriesPerPush series under
// consecutive instances, each acknowledged with its own id, so Series
// distinct series arrive in Series/SeriesPerPush pushes.
func TestRunSeriesPerPush(t *testing.T) {
	f := &fakePusher{}
	srv := newServer(t, f, false)
	var log AckLog
	s, err := Run(context.Background(), Config{URL: srv.URL, Dir: testDir(t), Workers: 2, MaxPushes: 10, Series: 50, SeriesPerPush: 5, Acked: log.Record})
	if err != nil {
		t.Fatal(err)
	}
	if s.Pushes != 10 || s.Profiles != 50 || s.Errors != 0 {
		t.Fatalf("summary %+v", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bad) > 0 || len(f.received) != 50 {
		t.Fatalf("server received %d profiles, problems %v", len(f.received), f.bad)
	}
	instances := map[string]bool{}
	for _, a := range log.Acks() {
		r, ok := f.received[a.ID]
		if !ok {
			t.Fatalf("ack %s not received", a.ID)
		}
		instances[r.labels["instance"]] = true
	}
	if len(instances) != 50 {
		t.Fatalf("%d distinct instances, want 50", len(instances))
	}
}

func TestRunErrorsByCode(t *testing.T) {
	f := &fakePusher{reject: "app-b"}
	srv := newServer(t, f, false)
	var log AckLog
	s, err := Run(context.Background(), Config{URL: srv.URL, Dir: testDir(t), Workers: 1, MaxPushes: 10, Acked: log.Record})
	if err != nil {
		t.Fatal(err)
	}
	// Files alternate a, b, a, b...: half are rejected.
	if s.Profiles != 5 || s.Errors != 5 || s.ErrorsByCode["invalid_argument"] != 5 || len(log.Acks()) != 5 {
		t.Fatalf("summary %+v, acks %d", s, len(log.Acks()))
	}
	if !strings.Contains(s.String(), "errors by code: invalid_argument=5") {
		t.Fatalf("summary text %q", s.String())
	}
}

func TestRunRate(t *testing.T) {
	f := &fakePusher{}
	srv := newServer(t, f, false)
	s, err := Run(context.Background(), Config{URL: srv.URL, Dir: testDir(t), Rate: 1000, Workers: 2, MaxPushes: 20})
	if err != nil {
		t.Fatal(err)
	}
	if s.Profiles != 20 {
		t.Fatalf("summary %+v", s)
	}
}

func TestRunConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Dir: "x"}, "no URL"},
		{Config{URL: "http://x"}, "no directory"},
		{Config{URL: "http://x", Dir: t.TempDir()}, "no decodable pprof files"},
		{Config{URL: "http://x", Dir: "/nonexistent-dir"}, "no such file"},
		{Config{URL: "http://x", Dir: "d", Protocol: "smoke"}, "unknown protocol"},
		{Config{URL: "http://x", Dir: "d", Workers: -1}, "must not be negative"},
	} {
		_, err := Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// BenchmarkStamp compares the per-push cost of re-stamping a corpus-sized
// profile: appending a time member (what Run does) vs decode, set, marshal, gzip.
func BenchmarkStamp(b *testing.B) {
	raw := testProfile(b, 0)
	if dir := corpusDirB(); dir != "" {
		if d, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz")); err == nil {
			raw = d
		}
	}
	p, err := pprofdec.DecodePprof(raw, 0)
	if err != nil {
		b.Fatal(err)
	}
	m, _ := p.MarshalVT()
	f := &file{gz: gzipBytes(m)}
	b.Run("append-member", func(b *testing.B) {
		for b.Loop() {
			_ = f.body(time.Now().UnixNano())
		}
	})
	b.Run("remarshal-gzip", func(b *testing.B) {
		for b.Loop() {
			p.TimeNanos = time.Now().UnixNano()
			m, _ := p.MarshalVT()
			_ = gzipBytes(m)
		}
	})
}

func corpusDirB() string {
	dir, _ := os.Getwd()
	for i := 0; i < 10; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "testdata", "pprof")
		}
		dir = filepath.Dir(dir)
	}
	return ""
}
