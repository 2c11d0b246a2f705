package distributor

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// fakeAppender records appends and answers with err.
type fakeAppender struct {
	calls atomic.Int32
	rows  atomic.Int32
	err   error
}

func (a *fakeAppender) Append(_ context.Context, _ string, ps []push.Profile) error {
	a.calls.Add(1)
	if a.err != nil {
		return a.err
	}
	a.rows.Add(int32(len(ps)))
	return nil
}

type staticRing struct{ rs ReplicationSet }

func (r staticRing) ReplicationSet(uint32) (ReplicationSet, error) { return r.rs, nil }
func (r staticRing) ReadSet() (ReplicationSet, error)              { return r.rs, nil }

// replicas starts n replicas behind the internal handler, each appending to its fake.
func replicas(t *testing.T, errs ...error) ([]Instance, []*fakeAppender) {
	var ins []Instance
	var apps []*fakeAppender
	for i, err := range errs {
		app := &fakeAppender{err: err}
		srv := httptest.NewServer(NewInternalHandler(app, HandlerOptions{Logger: slog.New(slog.DiscardHandler)}))
		t.Cleanup(srv.Close)
		ins = append(ins, Instance{ID: "r" + string(rune('0'+i)), Addr: srv.Listener.Addr().String()})
		apps = append(apps, app)
	}
	return ins, apps
}

// rawProfile is a minimal valid pprof, uncompressed.
func rawProfile(t testing.TB) []byte {
	p := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		Function:    []*googlev1.Function{{Id: 1, Name: 3}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{1}, Value: []int64{5}}},
		TimeNanos:   time.Now().UnixNano(),
	}
	b, err := p.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func profiles(t *testing.T, n int) []push.Profile {
	raw := rawProfile(t)
	var out []push.Profile
	for i := range n {
		ls := model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc" + string(rune('a'+i))}}
		out = append(out, push.Profile{ID: head.ProfileID{byte(i + 1)}, Labels: ls, TimeNanos: time.Now().UnixNano(), Raw: raw})
	}
	return out
}

func newDist(rs ReplicationSet) *Distributor {
	return New(Options{Ring: staticRing{rs}, Self: "none", Logger: slog.New(slog.DiscardHandler), ReplicaTimeout: 10 * time.Second})
}

func TestQuorum(t *testing.T) {
	down := connect.NewError(connect.CodeUnavailable, errors.New("disk on fire"))
	limit := &head.SeriesLimitError{Tenant: "t", Limit: 1}
	invalid := &validation.Error{Reason: validation.InvalidLabelName, Msg: "bad label"}
	for _, c := range []struct {
		name     string
		errs     []error
		wantCode connect.Code // 0: success
		wantMsg  string
	}{
		{"all up", []error{nil, nil, nil}, 0, ""},
		{"one down", []error{nil, nil, down}, 0, ""},
		{"two down", []error{nil, down, down}, connect.CodeUnavailable, "2 of 3 replicas failed (quorum is 2): r1"},
		{"all down", []error{down, down, down}, connect.CodeUnavailable, "of 3 replicas failed"},
		{"limit on a quorum", []error{limit, limit, nil}, connect.CodeResourceExhausted, "limits.max-series-per-tenant"},
		{"limit on one", []error{limit, nil, nil}, 0, ""},
		{"invalid everywhere", []error{invalid, invalid, invalid}, connect.CodeInvalidArgument, "bad label"},
		{"one client error one down", []error{invalid, down, nil}, connect.CodeUnavailable, "2 of 3 replicas failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ins, apps := replicas(t, c.errs...)
			d := newDist(ReplicationSet{Instances: ins, MaxErrors: 1})
			err := d.Append(context.Background(), "t", profiles(t, 2))
			d.Drain()
			if c.wantCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else if connect.CodeOf(err) != c.wantCode || !strings.Contains(err.Error(), c.wantMsg) {
				t.Fatalf("error %v, want %v containing %q", err, c.wantCode, c.wantMsg)
			}
			for i, a := range apps {
				if a.calls.Load() != 1 {
					t.Errorf("replica %d called %d times, want once (one request per instance)", i, a.calls.Load())
				}
				if c.errs[i] == nil && a.rows.Load() != 2 {
					t.Errorf("replica %d got %d profiles, want 2", i, a.rows.Load())
				}
			}
		})
	}
}

func TestZoneQuorum(t *testing.T) {
	down := connect.NewError(connect.CodeUnavailable, errors.New("zone outage"))
	ins, _ := replicas(t, nil, down, down, nil)
	zones := []string{"a", "b", "b", "c"}
	for i := range ins {
		ins[i].Zone = zones[i]
	}
	// Two instances of one zone down: tolerated with one unavailable zone.
	d := newDist(ReplicationSet{Instances: ins, MaxUnavailableZones: 1})
	if err := d.Append(context.Background(), "t", profiles(t, 1)); err != nil {
		t.Fatal(err)
	}
	ins[3].Addr = "127.0.0.1:1" // and now a second zone fails
	if err := newDist(ReplicationSet{Instances: ins, MaxUnavailableZones: 1}).Append(context.Background(), "t", profiles(t, 1)); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("two zones down: %v", err)
	}
}

func TestLocalInProcess(t *testing.T) {
	ins, apps := replicas(t, nil, nil)
	local := &fakeAppender{}
	ins = append(ins, Instance{ID: "self", Addr: "127.0.0.1:1"}) // never dialled
	d := New(Options{Ring: staticRing{ReplicationSet{Instances: ins, MaxErrors: 1}}, Self: "self", Local: local, Logger: slog.New(slog.DiscardHandler)})
	if err := d.Append(context.Background(), "t", profiles(t, 3)); err != nil {
		t.Fatal(err)
	}
	d.Drain()
	if local.rows.Load() != 3 || apps[0].rows.Load() != 3 || apps[1].rows.Load() != 3 {
		t.Fatalf("rows local %d, remote %d %d: want 3 each", local.rows.Load(), apps[0].rows.Load(), apps[1].rows.Load())
	}
}

func TestReplicaTimeout(t *testing.T) {
	ins, _ := replicas(t, nil, nil)
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block); slow.Close() })
	ins = append(ins, Instance{ID: "slow", Addr: slow.Listener.Addr().String()})
	ins2 := append([]Instance{ins[0]}, ins[2])
	// Quorum reached without the slow one: Append returns without waiting for it.
	d := New(Options{Ring: staticRing{ReplicationSet{Instances: ins, MaxErrors: 1}}, Self: "none", ReplicaTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err := d.Append(context.Background(), "t", profiles(t, 1)); err != nil {
		t.Fatal(err)
	}
	// Quorum needs the slow one: it times out and the error says so.
	d = New(Options{Ring: staticRing{ReplicationSet{Instances: ins2, MaxErrors: 0}}, Self: "none", ReplicaTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	err := d.Append(context.Background(), "t", profiles(t, 1))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "slow") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("slow replica: %v", err)
	}
}

func TestInternalHandlerRejects(t *testing.T) {
	srv := httptest.NewServer(NewInternalHandler(&fakeAppender{}, HandlerOptions{}))
	defer srv.Close()
	for _, body := range []string{"", "\x01", "garbage"} {
		err := PostAppend(context.Background(), http.DefaultClient, srv.Listener.Addr().String(), []byte(body))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("body %q: %v, want invalid_argument", body, err)
		}
	}
}
