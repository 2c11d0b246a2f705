// Command benchlongrange is the client of hack/bench-longrange.sh (issue 25):
// it pushes a week of re-stamped profiles to a server speaking push.v1, and
// times week-long querier.v1 queries against it, so that Hearth and Pyroscope
// get the same data and the same questions.
//
//	benchlongrange push  -url U -file F -series 1000 -from T0 -to T1 -step 1h
//	benchlongrange query -url U -kind merge|series -from T0 -to T1 -n 5
//
// push: the pprof file's sample labels are dropped (pprof labels would make
// more series, and profile_id labels span profiles) and its time is set to
// every step of [from, to); at each step every series (instance="i-0000" ...)
// gets the profile under a fresh profile id, -batch series per request, -c
// requests at once, in time order (both servers then see each hour complete
// before the next).
//
// query: -n sequential queries of one kind; each prints its latency and the
// answer's totals (merge: the flame graph's total and node count; series: the
// series, points and sum of the values) so the script can check that both
// servers answered the same before it compares their times. The last line
// is machine-readable (key=value).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchlongrange push|query [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = push(os.Args[2:])
	case "query":
		err = query(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (push or query)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlongrange:", err)
		os.Exit(1)
	}
}

// unixTime parses -from/-to: unix seconds.
func unixTime(s int64) time.Time { return time.Unix(s, 0).UTC() }

func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:4040", "base URL")
	file := fs.String("file", "", "pprof file to push (required)")
	series := fs.Int("series", 1000, "series (instance label values)")
	from := fs.Int64("from", 0, "first stamp, unix seconds")
	to := fs.Int64("to", 0, "end of the stamps (exclusive), unix seconds")
	step := fs.Duration("step", time.Hour, "time between two profiles of a series")
	batch := fs.Int("batch", 100, "series per push request")
	workers := fs.Int("c", 4, "concurrent requests")
	service := fs.String("service", "longrange", "service_name label")
	name := fs.String("name", "process_cpu", "__name__ label")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *from == 0 || *to <= *from || *step <= 0 || *series <= 0 || *batch <= 0 {
		return errors.New("push needs -file, -from < -to, -step > 0, -series > 0, -batch > 0")
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	p, err := profile.ParseData(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	for _, s := range p.Sample {
		s.Label, s.NumLabel, s.NumUnit = nil, nil, nil
	}
	client := pushv1connect.NewPusherServiceClient(http.DefaultClient, *url)
	type job struct{ req *pushv1.PushRequest }
	jobs := make(chan job, *workers)
	var sent, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for j := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := client.Push(ctx, connect.NewRequest(j.req))
				cancel()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				sent.Add(int64(len(j.req.Series)))
			}
		})
	}
	start := time.Now()
	stamps := 0
	for t := unixTime(*from); t.Before(unixTime(*to)); t = t.Add(*step) {
		p.TimeNanos = t.UnixNano()
		var buf bytes.Buffer
		if err := p.Write(&buf); err != nil {
			return err
		}
		body := buf.Bytes()
		stamps++
		for lo := 0; lo < *series; lo += *batch {
			req := &pushv1.PushRequest{}
			for i := lo; i < min(lo+*batch, *series); i++ {
				req.Series = append(req.Series, &pushv1.RawProfileSeries{
					Labels: []*typesv1.LabelPair{
						{Name: "__name__", Value: *name},
						{Name: "instance", Value: fmt.Sprintf("i-%04d", i)},
						{Name: "service_name", Value: *service},
					},
					Samples: []*pushv1.RawSample{{RawProfile: body, ID: uuid()}},
				})
			}
			jobs <- job{req}
		}
	}
	close(jobs)
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("pushed %d profiles (%d stamps × %d series, %d bytes each) in %.1fs (%.0f/s), %d requests failed\n",
		sent.Load(), stamps, *series, len(raw), el, float64(sent.Load())/el, failed.Load())
	if firstErr != nil {
		return fmt.Errorf("first failure: %w", firstErr)
	}
	fmt.Printf("RESULT profiles=%d elapsed_s=%.2f\n", sent.Load(), el)
	return nil
}

// uuid is a random version-4 UUID: both servers take a sample's ID as the
// profile's id, and Hearth counts a profile id once.
func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func query(args []string) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:4040", "base URL")
	kind := fs.String("kind", "merge", "merge (SelectMergeStacktraces, a flame graph) or series (SelectSeries)")
	from := fs.Int64("from", 0, "query start, unix seconds")
	to := fs.Int64("to", 0, "query end, unix seconds")
	n := fs.Int("n", 5, "sequential queries")
	typ := fs.String("type", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "profile type id")
	sel := fs.String("selector", `{service_name="longrange"}`, "label selector")
	step := fs.Duration("step", time.Hour, "SelectSeries step")
	groupBy := fs.String("group-by", "instance", "SelectSeries group_by label")
	maxNodes := fs.Int64("max-nodes", 8192, "flame graph nodes")
	timeout := fs.Duration("timeout", 5*time.Minute, "one query's timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == 0 || *to <= *from || *n <= 0 {
		return errors.New("query needs -from < -to and -n > 0")
	}
	client := querierv1connect.NewQuerierServiceClient(http.DefaultClient, *url)
	startMs, endMs := *from*1000, *to*1000
	var lat []float64
	var answer string
	for i := range *n {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		t0 := time.Now()
		var got string
		var err error
		switch *kind {
		case "merge":
			var resp *connect.Response[querierv1.SelectMergeStacktracesResponse]
			resp, err = client.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
				ProfileTypeID: *typ, LabelSelector: *sel, Start: startMs, End: endMs, MaxNodes: maxNodes,
			}))
			if err == nil {
				fg := resp.Msg.Flamegraph
				nodes := 0
				for _, l := range fg.GetLevels() {
					nodes += len(l.Values) / 4
				}
				got = fmt.Sprintf("total=%d nodes=%d names=%d", fg.GetTotal(), nodes, len(fg.GetNames()))
			}
		case "series":
			var resp *connect.Response[querierv1.SelectSeriesResponse]
			resp, err = client.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
				ProfileTypeID: *typ, LabelSelector: *sel, Start: startMs, End: endMs,
				GroupBy: []string{*groupBy}, Step: step.Seconds(),
			}))
			if err == nil {
				points, sum := 0, 0.0
				for _, s := range resp.Msg.Series {
					points += len(s.Points)
					for _, p := range s.Points {
						sum += p.Value
					}
				}
				got = fmt.Sprintf("series=%d points=%d sum=%.0f", len(resp.Msg.Series), points, sum)
			}
		default:
			cancel()
			return fmt.Errorf("unknown -kind %q", *kind)
		}
		d := time.Since(t0).Seconds()
		cancel()
		if err != nil {
			return fmt.Errorf("query %d: %w", i+1, err)
		}
		if answer != "" && got != answer {
			return fmt.Errorf("query %d answered %q, query 1 %q", i+1, got, answer)
		}
		answer = got
		lat = append(lat, d)
		fmt.Printf("query %d: %.3fs %s\n", i+1, d, got)
	}
	first := lat[0]
	slices.Sort(lat)
	med := lat[len(lat)/2]
	if len(lat)%2 == 0 {
		med = (lat[len(lat)/2-1] + lat[len(lat)/2]) / 2
	}
	fmt.Printf("RESULT first_s=%.3f median_s=%.3f min_s=%.3f max_s=%.3f %s\n", first, med, lat[0], lat[len(lat)-1],
		answer)
	return nil
}
