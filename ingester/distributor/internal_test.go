package distributor

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// headAppender appends into a real head, as the store does after its WAL.
type headAppender struct {
	mu sync.Mutex
	h  *head.Head
	n  int
}

func (a *headAppender) Append(_ context.Context, tenant string, ps []push.Profile) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range ps {
		if _, err := a.h.Append(tenant, p.ID, p.Labels, p.Profile, p.TimeNanos); err != nil {
			return err
		}
		a.n++
	}
	return nil
}

func testLimits() *validation.Limits {
	var l validation.Limits
	l.MaxProfileSizeBytes = 1 << 20
	l.MaxLabelNamesPerSeries = 4
	l.MaxLabelNameLength = 64
	l.MaxLabelValueLength = 64
	l.MaxSamplesPerProfile = 2
	l.MaxStackDepth = 8
	l.MaxSymbolValueLength = 64
	l.RejectOlderThan = time.Hour // not applied by a replica
	l.CreationGracePeriod = time.Minute
	return &l
}

func entry(raw []byte, ls ...string) record.Entry {
	var labels model.Labels
	for i := 0; i+1 < len(ls); i += 2 {
		labels = append(labels, model.Label{Name: ls[i], Value: ls[i+1]})
	}
	return record.Entry{ID: head.ProfileID{1}, TimeNanos: time.Now().UnixNano(), Labels: labels, Raw: raw}
}

// A replica validates what it is sent again: the tenant id, the series and
// the profile against the limits. Every refusal is a 400 and stores nothing.
func TestInternalHandlerValidates(t *testing.T) {
	app := &headAppender{h: head.New(head.Options{})}
	srv := httptest.NewServer(NewInternalHandler(app, HandlerOptions{Limits: testLimits()}))
	defer srv.Close()
	raw := rawProfile(t)
	big := &googlev1.Profile{
		StringTable: []string{"", "cpu", "nanoseconds", "main"},
		SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
		Function:    []*googlev1.Function{{Id: 1, Name: 3}},
		Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1}}}},
		Sample:      []*googlev1.Sample{{LocationId: []uint64{1}, Value: []int64{1}}, {LocationId: []uint64{1}, Value: []int64{1}}, {LocationId: []uint64{1}, Value: []int64{1}}},
	}
	tooMany, _ := big.MarshalVT()
	ok := []string{"__name__", "process_cpu", "service_name", "svc"}
	cases := []struct {
		name, tenant string
		e            record.Entry
		want         string
	}{
		{"federated tenant", "tenant-a|tenant-b", entry(raw, ok...), "federated ids (a|b) are not supported"},
		{"path tenant", "../etc", entry(raw, ok...), "contains '/'"},
		{"empty tenant", "", entry(raw, ok...), "tenant id is empty"},
		{"unsorted labels", "t", entry(raw, "service_name", "svc", "__name__", "process_cpu"), "not sorted"},
		{"no service name", "t", entry(raw, "__name__", "process_cpu"), "no service_name"},
		{"invalid label name", "t", entry(raw, "__name__", "process_cpu", "bad-name", "x", "service_name", "svc"), "label name \"bad-name\" is invalid"},
		{"duplicate label", "t", entry(raw, "__name__", "process_cpu", "a", "1", "a", "2", "service_name", "svc"), "appears more than once"},
		{"too many labels", "t", entry(raw, "__name__", "process_cpu", "a", "1", "b", "2", "c", "3", "service_name", "svc"), "limits.max-label-names-per-series"},
		{"long value", "t", entry(raw, "__name__", "process_cpu", "service_name", strings.Repeat("v", 65)), "limits.max-label-value-length"},
		{"too many samples", "t", entry(tooMany, ok...), "limits.max-profile-stacktrace-samples"},
		{"not a profile", "t", entry([]byte("\xff\xff garbage"), ok...), "profile 0"},
	}
	for _, c := range cases {
		err := PostAppend(context.Background(), http.DefaultClient, srv.Listener.Addr().String(), record.Encode(c.tenant, []record.Entry{c.e}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want invalid_argument containing %q", c.name, err, c.want)
		}
	}
	if app.n != 0 {
		t.Fatalf("%d refused profiles were stored", app.n)
	}
	// An old profile is not the replica's to refuse (the front door checked its time).
	old := entry(raw, ok...)
	old.TimeNanos = time.Now().Add(-48 * time.Hour).UnixNano()
	if err := PostAppend(context.Background(), http.DefaultClient, srv.Listener.Addr().String(), record.Encode("tenant-a", []record.Entry{entry(raw, ok...), old})); err != nil {
		t.Fatal(err)
	}
	if app.n != 2 {
		t.Fatalf("stored %d profiles, want 2", app.n)
	}
}

// FuzzInternalAppend feeds arbitrary append bodies through the replica
// handler into a real head: the answer is 204 or a 4xx, never a 5xx or a
// panic. Seeds are in testdata/fuzz/FuzzInternalAppend.
func FuzzInternalAppend(f *testing.F) {
	raw := rawProfile(f)
	f.Add(record.Encode("t", []record.Entry{entry(raw, "__name__", "process_cpu", "service_name", "svc")}))
	f.Add(record.Encode("a|b", []record.Entry{entry(raw, "__name__", "process_cpu", "service_name", "svc")}))
	f.Add(record.Encode("t", []record.Entry{entry([]byte{0x0a, 0x02, 0x08, 0x01}, "__name__", "process_cpu", "service_name", "svc")}))
	lim := testLimits()
	lim.MaxSamplesPerProfile = 1000
	f.Fuzz(func(t *testing.T, body []byte) {
		app := &headAppender{h: head.New(head.Options{MaxSeriesPerTenant: 100})}
		h := NewInternalHandler(app, HandlerOptions{Limits: lim})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, AppendPath, bytes.NewReader(body)))
		if rec.Code != http.StatusNoContent && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("answered %d: %s", rec.Code, rec.Body.String())
		}
		if rec.Code == http.StatusNoContent {
			tn, entries, err := record.Decode(body)
			if err != nil || app.n != len(entries) {
				t.Fatalf("accepted a body that decodes to %v / %d entries, stored %d", err, len(entries), app.n)
			}
			if th := app.h.Tenant(tn); len(entries) > 0 && th == nil {
				t.Fatalf("accepted %d profiles of tenant %q but the head has none", len(entries), tn)
			}
		}
	})
}
