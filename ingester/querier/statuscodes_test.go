package querier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// statusCase is one request of the status code table: its name is the
// Pyroscope v1.18.0 case it mirrors (pkg/test/integration/
// http_status_codes_test.go, "<endpoint path>/<case name>").
type statusCase struct {
	name   string
	method string
	path   string
	params url.Values
	ctype  string // Content-Type; "" sends none
	body   string
	want   int
	// withData, when set, is the code once the tenant has data: Pyroscope's
	// table runs on an empty instance, and its ingesters read some inputs
	// only for a tenant that has data.
	withData int
}

const (
	cpuType   = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	allocType = "memory:alloc_objects:count:space:bytes"
	rpcPrefix = "/querier.v1.QuerierService/"
)

// omit removes a key from a JSON body built by body.
type omitted struct{}

var omit = omitted{}

// body is base with the overrides applied (omit deletes a key), as JSON.
func body(base map[string]any, overrides ...any) string {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		k := overrides[i].(string)
		if _, ok := overrides[i+1].(omitted); ok {
			delete(m, k)
			continue
		}
		m[k] = overrides[i+1]
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// statusCases is Pyroscope's table, endpoint by endpoint, in its order.
func statusCases(now time.Time) []statusCase {
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	nowMs := now.UnixMilli()
	var cs []statusCase
	add := func(c statusCase) { cs = append(cs, c) }
	rpc := func(method, name, b string, want int) {
		add(statusCase{name: rpcPrefix + method + "/" + name, method: http.MethodPost, path: rpcPrefix + method, ctype: "application/json", body: b, want: want})
	}
	// Every connect endpoint's "get/put/delete/patch_method_not_allowed"
	// (405) and "invalid_content_type" (text/plain: 415) cases, and its
	// "invalid_json" and "empty_body" cases (400).
	common := func(method, valid string) {
		add(statusCase{name: rpcPrefix + method + "/get_method_not_allowed", method: http.MethodGet, path: rpcPrefix + method, ctype: "application/json", want: 405})
		for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
			add(statusCase{name: rpcPrefix + method + "/" + strings.ToLower(m) + "_method_not_allowed", method: m, path: rpcPrefix + method, ctype: "application/json", body: valid, want: 405})
		}
		add(statusCase{name: rpcPrefix + method + "/invalid_content_type", method: http.MethodPost, path: rpcPrefix + method, ctype: "text/plain", body: valid, want: 415})
		rpc(method, "invalid_json", `{"invalid json"`, 400)
		rpc(method, "empty_body", "", 400)
	}

	// /pyroscope/render
	render := func(name string, want int, kv ...string) {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		add(statusCase{name: "/pyroscope/render/" + name, method: http.MethodGet, path: "/pyroscope/render", params: v, want: want})
	}
	q := cpuType + `{service_name="pyroscope"}`
	last15 := []string{"query", q, "from", "now-15m", "until", "now"}
	with := func(base []string, kv ...string) []string { return append(append([]string{}, base...), kv...) }
	render("valid", 200, last15...)                                                                                               // valid
	render("format_dot_valid", 200, with(last15, "format", "dot")...)                                                             // format_dot_valid
	render("format_dot_with_max_nodes", 200, with(last15, "format", "dot", "maxNodes", "50")...)                                  // format_dot_with_max_nodes
	render("format_dot_with_max_nodes_hyphen", 200, with(last15, "format", "dot", "max-nodes", "50")...)                          // format_dot_with_max_nodes_hyphen
	render("with_group_by", 200, with(last15, "groupBy", "service_name")...)                                                      // with_group_by
	render("with_group_by_multiple", 200, with(last15, "groupBy", "service_name", "groupBy", "region")...)                        // with_group_by_multiple
	render("with_aggregation_sum", 200, with(last15, "aggregation", "sum")...)                                                    // with_aggregation_sum
	render("with_aggregation_avg", 200, with(last15, "aggregation", "avg")...)                                                    // with_aggregation_avg
	render("with_aggregation_invalid", 200, with(last15, "aggregation", "invalid")...)                                            // with_aggregation_invalid
	render("with_max_nodes", 200, with(last15, "maxNodes", "1024")...)                                                            // with_max_nodes
	render("with_max_nodes_hyphen", 200, with(last15, "max-nodes", "1024")...)                                                    // with_max_nodes_hyphen
	render("with_max_nodes_zero", 200, with(last15, "maxNodes", "0")...)                                                          // with_max_nodes_zero
	render("with_max_nodes_invalid", 200, with(last15, "maxNodes", "invalid")...)                                                 // with_max_nodes_invalid
	render("all_params_combined", 200, with(last15, "groupBy", "service_name", "aggregation", "sum", "maxNodes", "512")...)       // all_params_combined
	render("all_zero_time_range", 400, "query", q, "from", "0", "until", "0")                                                     // all_zero_time_range
	render("from_zero_time_range", 400, "query", q, "from", "0", "until", "now")                                                  // from_zero_time_range
	render("until_zero_time_range", 400, "query", q, "from", "now-15m", "until", "0")                                             // until_zero_time_range
	render("missing_query", 400, "from", "now-15m", "until", "now")                                                               // missing_query
	render("invalid_query_syntax", 400, "query", "bad_query", "from", "now-15m", "until", "now")                                  // invalid_query_syntax
	render("query_without_profile_type", 400, "query", `{service_name="test"}`, "from", "now-15m", "until", "now")                // query_without_profile_type
	render("invalid_profile_type_format", 400, "query", `invalid_format{service_name="test"}`, "from", "now-15m", "until", "now") // invalid_profile_type_format
	render("empty_query_param", 400, "query", "", "from", "now-15m", "until", "now")                                              // empty_query_param
	render("from_and_until_0_with_dot_format", 400, "query", q, "from", "0", "until", "0", "format", "dot")                       // from_and_until_0_with_dot_format
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {                            // post/put/delete/patch_method_not_allowed
		v := url.Values{"query": {q}, "from": {"now-15m"}, "until": {"now"}}
		add(statusCase{name: "/pyroscope/render/" + strings.ToLower(m) + "_method_not_allowed", method: m, path: "/pyroscope/render", params: v, want: 405})
	}

	// /pyroscope/render-diff
	diff := func(name string, want int, kv ...string) {
		v := url.Values{"leftQuery": {q}, "leftFrom": {"now-30m"}, "leftUntil": {"now-15m"}, "rightQuery": {q}, "rightFrom": {"now-15m"}, "rightUntil": {"now"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "<omit>" {
				v.Del(kv[i])
				continue
			}
			v.Set(kv[i], kv[i+1])
		}
		add(statusCase{name: "/pyroscope/render-diff/" + name, method: http.MethodGet, path: "/pyroscope/render-diff", params: v, want: want})
	}
	diff("valid", 200)                                                                                             // valid
	diff("same_query_different_times", 200, "leftFrom", "now-60m", "leftUntil", "now-30m", "rightFrom", "now-30m") // same_query_different_times
	diff("same_time_range", 200, "leftFrom", "now-15m", "leftUntil", "now")                                        // same_time_range
	diff("missing_left_query", 400, "leftQuery", "<omit>")                                                         // missing_left_query
	diff("missing_right_query", 400, "rightQuery", "<omit>")                                                       // missing_right_query
	diff("invalid_left_query_syntax", 400, "leftQuery", "bad_query")                                               // invalid_left_query_syntax
	diff("invalid_right_query_syntax", 400, "rightQuery", "bad_query")                                             // invalid_right_query_syntax
	diff("left_query_without_profile_type", 400, "leftQuery", `{service_name="test"}`)                             // left_query_without_profile_type
	diff("right_query_without_profile_type", 400, "rightQuery", `{service_name="test"}`)                           // right_query_without_profile_type
	diff("invalid_left_profile_type_format", 400, "leftQuery", `invalid_format{service_name="test"}`)              // invalid_left_profile_type_format
	diff("invalid_right_profile_type_format", 400, "rightQuery", `invalid_format{service_name="test"}`)            // invalid_right_profile_type_format
	diff("profile_types_mismatch", 400, "rightQuery", allocType+`{service_name="pyroscope"}`)                      // profile_types_mismatch
	diff("empty_left_query", 400, "leftQuery", "")                                                                 // empty_left_query
	diff("empty_right_query", 400, "rightQuery", "")                                                               // empty_right_query
	diff("left_from_zero", 400, "leftFrom", "0")                                                                   // left_from_zero
	diff("left_until_zero", 400, "leftUntil", "0")                                                                 // left_until_zero
	diff("right_from_zero", 400, "rightFrom", "0")                                                                 // right_from_zero
	diff("right_until_zero", 400, "rightUntil", "0")                                                               // right_until_zero
	diff("all_zero_time_ranges", 400, "leftFrom", "0", "leftUntil", "0", "rightFrom", "0", "rightUntil", "0")      // all_zero_time_ranges
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {             // post/put/delete/patch_method_not_allowed
		diff(strings.ToLower(m)+"_method_not_allowed", 405)
		cs[len(cs)-1].method = m
	}

	// ProfileTypes
	rng := map[string]any{"start": ago(time.Hour), "end": nowMs}
	rpc("ProfileTypes", "valid", body(rng), 200)                                                         // valid
	rpc("ProfileTypes", "zero_time_range", body(nil, "start", 0, "end", 0), 200)                         // zero_time_range
	rpc("ProfileTypes", "valid_long_range", body(rng, "start", ago(24*time.Hour)), 200)                  // valid_long_range
	rpc("ProfileTypes", "valid_short_range", body(rng, "start", ago(5*time.Minute)), 200)                // valid_short_range
	rpc("ProfileTypes", "negative_start", body(rng, "start", -1), 200)                                   // negative_start
	rpc("ProfileTypes", "negative_end", body(nil, "start", -2, "end", -1), 200)                          // negative_end
	rpc("ProfileTypes", "start_after_end", body(nil, "start", nowMs, "end", ago(time.Hour)), 400)        // start_after_end
	rpc("ProfileTypes", "start_string_instead_of_number", `{"start": "now-1h", "end": 0}`, 400)          // start_string_instead_of_number
	rpc("ProfileTypes", "end_string_instead_of_number", `{"start": 0, "end": "now"}`, 400)               // end_string_instead_of_number
	common("ProfileTypes", body(rng))                                                                    // invalid_json, empty_body, *_method_not_allowed, invalid_content_type
	cs[len(cs)-7].params = url.Values{"start": {fmt.Sprint(ago(time.Hour))}, "end": {fmt.Sprint(nowMs)}} // get_method_not_allowed sends the range as parameters

	// LabelValues. Where Pyroscope's v1 (the default architecture in
	// v1.18.0) and v2 differ, the case says which one Hearth follows.
	lv := map[string]any{"name": "service_name", "start": ago(time.Hour), "end": nowMs}
	rpc("LabelValues", "valid", body(lv), 200)                                                                                             // valid
	rpc("LabelValues", "valid_with_matchers", body(lv, "matchers", []string{`{namespace="default"}`}), 200)                                // valid_with_matchers
	rpc("LabelValues", "valid_with_multiple_matchers", body(lv, "matchers", []string{`{namespace="default"}`, `{region="us-west"}`}), 200) // valid_with_multiple_matchers
	rpc("LabelValues", "invalid_no_time_range", body(nil, "name", "service_name"), 200)                                                    // invalid_no_time_range: v1 200 (v2 400): a request without a range asks the heads
	rpc("LabelValues", "invalid_matchers_syntax", body(lv, "matchers", []string{"!bad_syntax!"}), 400)                                     // invalid_matchers_syntax: v2 400 (v1 200 only while the tenant has no data: its ingesters never parse the matchers)
	rpc("LabelValues", "start_after_end", body(lv, "start", nowMs, "end", ago(time.Hour)), 400)                                            // start_after_end
	rpc("LabelValues", "empty_name", body(lv, "name", ""), 400)                                                                            // empty_name
	rpc("LabelValues", "missing_name", body(lv, "name", omit), 400)                                                                        // missing_name
	common("LabelValues", body(lv))                                                                                                        // invalid_json, empty_body, *_method_not_allowed, invalid_content_type

	// LabelNames
	rpc("LabelNames", "valid", body(rng), 200)                                                              // valid
	rpc("LabelNames", "valid_with_matchers", body(rng, "matchers", []string{`{namespace="default"}`}), 200) // valid_with_matchers
	rpc("LabelNames", "valid_no_time_range", body(nil), 200)                                                // valid_no_time_range: v1 200 (v2 400)
	rpc("LabelNames", "start_after_end", body(nil, "start", nowMs, "end", ago(time.Hour)), 400)             // start_after_end
	rpc("LabelNames", "invalid_matchers_syntax", body(rng, "matchers", []string{"!bad_syntax!"}), 400)      // invalid_matchers_syntax: v2 400 (v1 200 only without data)
	common("LabelNames", body(rng))                                                                         // invalid_json, empty_body, *_method_not_allowed, invalid_content_type

	// Series
	se := map[string]any{"matchers": []string{`{service_name="test"}`}, "start": ago(time.Hour), "end": nowMs}
	rpc("Series", "valid", body(se), 200)                                                                       // valid
	rpc("Series", "valid_with_label_names", body(se, "labelNames", []string{"service_name", "namespace"}), 200) // valid_with_label_names
	rpc("Series", "valid_no_matchers", body(se, "matchers", omit), 200)                                         // valid_no_matchers
	rpc("Series", "start_after_end", body(se, "start", nowMs, "end", ago(time.Hour)), 400)                      // start_after_end
	rpc("Series", "invalid_no_time_range", body(se, "start", omit, "end", omit), 200)                           // invalid_no_time_range: v1 200 (v2 400)
	rpc("Series", "invalid_matchers_syntax", body(se, "matchers", []string{"!bad_syntax!"}), 400)               // invalid_matchers_syntax: v2 400 (v1 200 only without data)
	common("Series", body(se))                                                                                  // invalid_json, empty_body, *_method_not_allowed, invalid_content_type

	// SelectMergeStacktraces, SelectMergeProfile, SelectSeries and
	// SelectMergeSpanProfile share most cases.
	sel := map[string]any{"profileTypeID": cpuType, "labelSelector": "{}", "start": ago(time.Hour), "end": nowMs}
	selectCases := func(method string, base map[string]any, noRange string) {
		rpc(method, "missing_profile_type_id", body(base, "profileTypeID", omit), 400)                 // missing_profile_type_id
		rpc(method, "empty_profile_type_id", body(base, "profileTypeID", ""), 400)                     // empty_profile_type_id
		rpc(method, "invalid_profile_type_format", body(base, "profileTypeID", "invalid_format"), 400) // invalid_profile_type_format
		rpc(method, "missing_label_selector", body(base, "labelSelector", omit), 400)                  // missing_label_selector
		rpc(method, "invalid_label_selector", body(base, "labelSelector", "!bad_syntax!"), 400)        // invalid_label_selector
		rpc(method, "start_after_end", body(base, "start", nowMs, "end", ago(time.Hour)), 400)         // start_after_end
		rpc(method, noRange, body(base, "start", omit, "end", omit), 400)                              // invalid_no_time_range (SelectMergeProfile: valid_no_time_range)
		common(method, body(base))                                                                     // invalid_json, empty_body, *_method_not_allowed, invalid_content_type
	}
	rpc("SelectMergeStacktraces", "valid", body(sel), 200)                                                               // valid
	rpc("SelectMergeStacktraces", "valid_with_max_nodes", body(sel, "maxNodes", 1024), 200)                              // valid_with_max_nodes
	rpc("SelectMergeStacktraces", "valid_with_format_tree", body(sel, "format", 2), 200)                                 // valid_with_format_tree
	rpc("SelectMergeStacktraces", "valid_with_label_selector", body(sel, "labelSelector", `{service_name="test"}`), 200) // valid_with_label_selector
	selectCases("SelectMergeStacktraces", sel, "invalid_no_time_range")

	rpc("SelectMergeProfile", "valid", body(sel), 200)                                                               // valid
	rpc("SelectMergeProfile", "valid_with_max_nodes", body(sel, "maxNodes", 1024), 200)                              // valid_with_max_nodes
	rpc("SelectMergeProfile", "valid_with_label_selector", body(sel, "labelSelector", `{service_name="test"}`), 200) // valid_with_label_selector
	selectCases("SelectMergeProfile", sel, "valid_no_time_range")

	ss := map[string]any{"profileTypeID": cpuType, "labelSelector": "{}", "start": ago(time.Hour), "end": nowMs, "step": 15.0}
	rpc("SelectSeries", "valid", body(ss), 200)                                                    // valid
	rpc("SelectSeries", "valid_with_group_by", body(ss, "groupBy", []string{"service_name"}), 200) // valid_with_group_by
	rpc("SelectSeries", "valid_with_limit", body(ss, "limit", 10), 200)                            // valid_with_limit
	rpc("SelectSeries", "invalid_no_step", body(ss, "step", omit), 400)                            // invalid_no_step
	selectCases("SelectSeries", ss, "invalid_no_time_range")

	// Diff
	left := map[string]any{"profileTypeID": cpuType, "labelSelector": "{}", "start": ago(2 * time.Hour), "end": ago(time.Hour)}
	right := map[string]any{"profileTypeID": cpuType, "labelSelector": "{}", "start": ago(time.Hour), "end": nowMs}
	side := func(base map[string]any, overrides ...any) json.RawMessage {
		return json.RawMessage(body(base, overrides...))
	}
	dv := map[string]any{"left": side(left), "right": side(right)}
	rpc("Diff", "valid", body(dv), 200)                                                                                             // valid
	rpc("Diff", "valid_with_max_nodes", body(dv, "left", side(left, "maxNodes", 1024), "right", side(right, "maxNodes", 512)), 200) // valid_with_max_nodes
	rpc("Diff", "valid_same_time_range", body(dv, "left", side(right)), 200)                                                        // valid_same_time_range
	rpc("Diff", "missing_left", body(dv, "left", omit), 400)                                                                        // missing_left
	rpc("Diff", "missing_right", body(dv, "right", omit), 400)                                                                      // missing_right
	rpc("Diff", "left_missing_profile_type_id", body(dv, "left", side(left, "profileTypeID", omit)), 400)                           // left_missing_profile_type_id
	rpc("Diff", "right_missing_profile_type_id", body(dv, "right", side(right, "profileTypeID", omit)), 400)                        // right_missing_profile_type_id
	rpc("Diff", "left_invalid_profile_type", body(dv, "left", side(left, "profileTypeID", "invalid_format")), 400)                  // left_invalid_profile_type
	rpc("Diff", "right_invalid_profile_type", body(dv, "right", side(right, "profileTypeID", "invalid_format")), 400)               // right_invalid_profile_type
	rpc("Diff", "left_missing_label_selector", body(dv, "left", side(left, "labelSelector", omit)), 400)                            // left_missing_label_selector
	rpc("Diff", "right_missing_label_selector", body(dv, "right", side(right, "labelSelector", omit)), 400)                         // right_missing_label_selector
	common("Diff", body(dv))                                                                                                        // invalid_json, empty_body, *_method_not_allowed, invalid_content_type

	// SelectMergeSpanProfile
	sp := map[string]any{"profileTypeID": cpuType, "labelSelector": "{}", "start": ago(time.Hour), "end": nowMs, "spanSelector": []string{"span1"}}
	// "span1" is no span id: Pyroscope's ingesters parse the span selector
	// only for a tenant with data (then the query fails: 500); Hearth
	// answers the empty merge when nothing is selected, else 400.
	rpc("SelectMergeSpanProfile", "valid", body(sp, "spanSelector", []string{"span1", "span2"}), 200) // valid
	cs[len(cs)-1].withData = 400
	rpc("SelectMergeSpanProfile", "valid_with_max_nodes", body(sp, "maxNodes", 1024), 200) // valid_with_max_nodes
	cs[len(cs)-1].withData = 400
	rpc("SelectMergeSpanProfile", "valid_with_format_tree", body(sp, "format", 2), 200) // valid_with_format_tree
	cs[len(cs)-1].withData = 400
	selectCases("SelectMergeSpanProfile", sp, "invalid_no_time_range")
	return cs
}

// pushStatusData pushes CPU profiles of two services (the table's
// service_name="pyroscope" and "test", namespace="default") stamped now.
func pushStatusData(t *testing.T, url string) {
	t.Helper()
	client := pushv1connect.NewPusherServiceClient(http.DefaultClient, url)
	for _, svc := range []string{"pyroscope", "test"} {
		p := &googlev1.Profile{
			StringTable: []string{"", "cpu", "nanoseconds", "main", "work", "main.go", "span_id", "00000000000000a1"},
			SampleType:  []*googlev1.ValueType{{Type: 1, Unit: 2}},
			PeriodType:  &googlev1.ValueType{Type: 1, Unit: 2},
			Function:    []*googlev1.Function{{Id: 1, Name: 3, Filename: 5}, {Id: 2, Name: 4, Filename: 5}},
			Location:    []*googlev1.Location{{Id: 1, Line: []*googlev1.Line{{FunctionId: 1, Line: 10}}}, {Id: 2, Line: []*googlev1.Line{{FunctionId: 2, Line: 20}}}},
			Sample: []*googlev1.Sample{
				{LocationId: []uint64{2, 1}, Value: []int64{300}, Label: []*googlev1.Label{{Key: 6, Str: 7}}},
				{LocationId: []uint64{1}, Value: []int64{100}},
			},
			TimeNanos: time.Now().Add(-time.Minute).UnixNano(),
			Period:    10_000_000,
		}
		raw, err := p.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		labels := []*typesv1.LabelPair{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: svc}, {Name: "namespace", Value: "default"}, {Name: "region", Value: "us-west"}}
		_, err = client.Push(context.Background(), connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels: labels, Samples: []*pushv1.RawSample{{RawProfile: raw, ID: uuid.NewString()}},
		}}}))
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkRenderFormats: the valid requests select the pushed profiles, and
// render answers the flamebearer JSON for any format but dot (Pyroscope's
// render falls back to JSON), render-diff for any format.
func checkRenderFormats(t *testing.T, client *http.Client, base string) {
	t.Helper()
	q := url.QueryEscape(cpuType + `{service_name="pyroscope"}`)
	for _, path := range []string{
		"/pyroscope/render?query=" + q + "&from=now-15m&until=now",
		"/pyroscope/render?query=" + q + "&from=now-15m&until=now&format=json",
		"/pyroscope/render?query=" + q + "&from=now-15m&until=now&format=collapsed",
		"/pyroscope/render?query=" + q + "&from=now-15m&until=now&format=pprof",
		"/pyroscope/render?query=" + q + "&from=now-15m&until=now&format=no-such-format",
		"/pyroscope/render-diff?leftQuery=" + q + "&leftFrom=now-15m&leftUntil=now&rightQuery=" + q + "&rightFrom=now-15m&rightUntil=now&format=collapsed",
	} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var fb struct {
			Flamebearer struct {
				Names    []string `json:"names"`
				NumTicks int64    `json:"numTicks"`
			} `json:"flamebearer"`
		}
		err = json.NewDecoder(resp.Body).Decode(&fb)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, %s, %v", path, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		want := int64(400) // main;work 300 + main 100
		if strings.HasPrefix(path, "/pyroscope/render-diff") {
			want = 800 // both sides
		}
		if fb.Flamebearer.NumTicks != want || !slices.Contains(fb.Flamebearer.Names, "work") {
			t.Fatalf("%s: %d ticks, names %v; want %d and work", path, fb.Flamebearer.NumTicks, fb.Flamebearer.Names, want)
		}
	}
	resp, err := client.Get(base + "/pyroscope/render?query=" + q + "&from=now-15m&until=now&format=dot")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("digraph")) {
		t.Fatalf("format=dot: status %d, %.100s", resp.StatusCode, b)
	}
}

// TestStatusCodesMatchPyroscope sends every request of Pyroscope's status
// code table to a real `hearth ingester` over HTTP and checks the status
// code: on an ingester without data (as Pyroscope's table runs) and on one
// holding profiles that the valid requests select.
func TestStatusCodesMatchPyroscope(t *testing.T) {
	if n := len(statusCases(time.Now())); n != 194 {
		t.Fatalf("%d cases, Pyroscope's table has 194", n)
	}
	for _, state := range []string{"empty", "with-data"} {
		t.Run(state, func(t *testing.T) {
			ing := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn")
			client := &http.Client{Timeout: 30 * time.Second}
			if state == "with-data" {
				pushStatusData(t, ing.URL)
				checkRenderFormats(t, client, ing.URL)
			}
			// The ranges end now, after the push: the data is stamped a
			// minute before it, and a slow first state must not leave it
			// after the ranges' end (the valid span selections then select
			// nothing and answer 200).
			cases := statusCases(time.Now())
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					u := ing.URL + c.path
					if len(c.params) > 0 {
						u += "?" + c.params.Encode()
					}
					var rd io.Reader
					if c.body != "" {
						rd = bytes.NewReader([]byte(c.body))
					}
					req, err := http.NewRequest(c.method, u, rd)
					if err != nil {
						t.Fatal(err)
					}
					if c.ctype != "" {
						req.Header.Set("Content-Type", c.ctype)
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
					resp.Body.Close()
					want := c.want
					if state == "with-data" && c.withData != 0 {
						want = c.withData
					}
					if resp.StatusCode != want {
						t.Errorf("%s %s: status %d, want %d; body: %s", c.method, c.path, resp.StatusCode, want, b)
					}
				})
			}
		})
	}
}

// TestStatusCasesCoverPyroscopeTable reads Pyroscope's table from its
// repository and checks that statusCases has exactly its cases, each
// expecting Pyroscope's code (or its v1 code, where the table gives one).
func TestStatusCasesCoverPyroscopeTable(t *testing.T) {
	repo := os.Getenv("HEARTH_PYROSCOPE_REPO")
	if repo == "" {
		t.Skip("Pyroscope's status code table: HEARTH_PYROSCOPE_REPO unset")
	}
	src, err := exec.Command("git", "-C", repo, "show", "v1.18.0:pkg/test/integration/http_status_codes_test.go").Output()
	if err != nil {
		t.Fatalf("reading Pyroscope's table: %v", err)
	}
	codes := map[string]int{"OK": 200, "BadRequest": 400, "MethodNotAllowed": 405, "UnsupportedMediaType": 415}
	pathRe := regexp.MustCompile(`^\s*Path:\s*"([^"]+)"`)
	codeRe := regexp.MustCompile(`^\s*http\.Status(\w+): \{`)
	nameRe := regexp.MustCompile(`^\s*Name:\s*"([^"]+)"`)
	v1Re := regexp.MustCompile(`^\s*WantV1StatusCode:\s*http\.Status(\w+)`)
	type want struct{ code, v1 int }
	theirs := map[string]*want{}
	var path, last string
	code := 0
	for _, line := range strings.Split(string(src), "\n") {
		if m := pathRe.FindStringSubmatch(line); m != nil {
			path = m[1]
		} else if m := codeRe.FindStringSubmatch(line); m != nil {
			code = codes[m[1]]
		} else if m := nameRe.FindStringSubmatch(line); m != nil {
			last = path + "/" + m[1]
			theirs[last] = &want{code: code}
		} else if m := v1Re.FindStringSubmatch(line); m != nil {
			theirs[last].v1 = codes[m[1]]
		}
	}
	ours := statusCases(time.Now())
	if len(theirs) != len(ours) {
		t.Errorf("Pyroscope's table has %d cases, ours %d", len(theirs), len(ours))
	}
	seen := map[string]bool{}
	for _, c := range ours {
		if seen[c.name] {
			t.Errorf("%s twice", c.name)
		}
		seen[c.name] = true
		w, ok := theirs[c.name]
		if !ok {
			t.Errorf("%s is not in Pyroscope's table", c.name)
			continue
		}
		if c.want != w.code && c.want != w.v1 {
			t.Errorf("%s: we want %d, Pyroscope %d (v1: %d)", c.name, c.want, w.code, w.v1)
		}
	}
	for name := range theirs {
		if !seen[name] {
			t.Errorf("%s is missing", name)
		}
	}
}
