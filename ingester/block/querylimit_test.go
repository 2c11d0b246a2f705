package block

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"

	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/querylimit"
)

// TestQueryBytesBudget: a merge over blocks charges what it reads from the
// bucket to its budget (querylimit.Bucket); one over
// max_fetched_bytes_per_query is refused with 400 (InvalidArgument, as
// Pyroscope refuses a query over its limits) naming the limit, and the
// refused query leaves the source usable for the next one.
func TestQueryBytesBudget(t *testing.T) {
	root := t.TempDir()
	ms := int64(time.Millisecond)
	for i := int64(1); i <= 3; i++ {
		writeTenant(t, oneProfileHead(t, i*1000*ms, "a"), root, WriteOptions{})
	}
	cb := newCounting(fsBucket(t, root))
	q := &querier.Service{Sources: []querier.Source{&BucketSource{Bucket: querylimit.Bucket(cb)}}}
	req := func() *connect.Request[querierv1.SelectMergeStacktracesRequest] {
		return connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{ProfileTypeID: "process_cpu:cpu:nanoseconds:cpu:nanoseconds", LabelSelector: "{}", Start: 1, End: 10_000})
	}

	full := querylimit.New(0, 0)
	resp, err := q.SelectMergeStacktraces(querylimit.With(context.Background(), full), req())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Flamegraph.GetTotal() == 0 {
		t.Fatal("the unlimited merge found nothing")
	}
	read := full.Bytes()
	if read == 0 {
		t.Fatal("the merge read block files but charged no bytes")
	}

	// A fresh source (nothing cached): a budget of half of that is refused.
	q = &querier.Service{Sources: []querier.Source{&BucketSource{Bucket: querylimit.Bucket(cb)}}}
	small := querylimit.New(read/2, 0)
	_, err = q.SelectMergeStacktraces(querylimit.With(context.Background(), small), req())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "max_fetched_bytes_per_query") {
		t.Fatalf("over the budget: %v", err)
	}
	if _, err := q.SelectMergeStacktraces(querylimit.With(context.Background(), querylimit.New(0, 0)), req()); err != nil {
		t.Fatalf("the next query, unlimited, after a refused one: %v", err)
	}
}
