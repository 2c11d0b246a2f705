package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
)

// CheckResult is the outcome of Check.
type CheckResult struct {
	Acked   int     // acknowledged pushes checked
	Found   float64 // of them, found by a query (profiles: the batch's total over one profile's)
	Missing int     // acknowledged pushes whose batch came back short (Acked - Found, rounded up per batch)
	Queries int     // queries made (retries included)
}

func (r CheckResult) String() string {
	return fmt.Sprintf("check: %d acknowledged, %.0f found, %d missing (%d queries)\n", r.Acked, r.Found, r.Missing, r.Queries)
}

// checkBatch bounds the profile ids of one query.
const checkBatch = 500

// Check asks the ingester at cfg.URL (which reads its peers and the bucket)
// for every acknowledged push in acks: per file, in batches of ids in time
// order, a merge of the batch's profiles (by profile id, over the batch's
// time range) must add up to the batch's size times one profile's total of
// the file's first sample type; a profile counted twice or missing shows as
// a difference. A query refused as retryable (429, 503) is retried for up to
// a minute.
func Check(ctx context.Context, cfg Config, acks []Ack) (CheckResult, error) {
	if err := cfg.defaults(); err != nil {
		return CheckResult{}, err
	}
	files, _, err := prepare(cfg.Dir, cfg.Out)
	if err != nil {
		return CheckResult{}, err
	}
	byName := map[string]*file{}
	for _, f := range files {
		byName[f.name] = f
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	q := querierv1connect.NewQuerierServiceClient(hc, cfg.URL)
	groups := map[string][]Ack{}
	for _, a := range acks {
		groups[a.File] = append(groups[a.File], a)
	}
	var res CheckResult
	for name, as := range groups {
		f := byName[name]
		if f == nil || f.perProfile == 0 {
			return res, fmt.Errorf("check: %s is not a file of %s with a nonzero total of its first sample type", name, cfg.Dir)
		}
		sort.Slice(as, func(i, j int) bool { return as[i].TimeNanos < as[j].TimeNanos })
		for len(as) > 0 {
			batch := as[:min(checkBatch, len(as))]
			as = as[len(batch):]
			ids := make([]string, len(batch))
			for i, a := range batch {
				ids[i] = a.ID
			}
			sel := "{service_name=" + strconv.Quote(cfg.service(f)) + "}"
			req := &querierv1.SelectMergeStacktracesRequest{
				ProfileTypeID: f.ptype, LabelSelector: sel, ProfileIdSelector: ids,
				Start: time.Unix(0, batch[0].TimeNanos).UnixMilli() - 1, End: time.Unix(0, batch[len(batch)-1].TimeNanos).UnixMilli() + 1,
			}
			total, n, err := mergeTotal(ctx, q, cfg.Tenant, req)
			res.Queries += n
			if err != nil {
				return res, err
			}
			found := float64(total) / float64(f.perProfile)
			res.Acked += len(batch)
			res.Found += found
			if short := float64(len(batch)) - found; short > 0 {
				res.Missing += int(short + 0.999)
			}
		}
	}
	return res, nil
}

// mergeTotal runs one merge, retrying retryable refusals for up to a minute.
func mergeTotal(ctx context.Context, q querierv1connect.QuerierServiceClient, tenant string, m *querierv1.SelectMergeStacktracesRequest) (int64, int, error) {
	deadline := time.Now().Add(time.Minute)
	for n := 1; ; n++ {
		req := connect.NewRequest(m)
		if tenant != "" {
			req.Header().Set("X-Scope-OrgID", tenant)
		}
		resp, err := q.SelectMergeStacktraces(ctx, req)
		if err == nil {
			return resp.Msg.GetFlamegraph().GetTotal(), n, nil
		}
		if c := connect.CodeOf(err); (c != connect.CodeResourceExhausted && c != connect.CodeUnavailable) || time.Now().After(deadline) {
			return 0, n, fmt.Errorf("check query: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, n, errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(min(n, 10)) * 100 * time.Millisecond):
		}
	}
}
