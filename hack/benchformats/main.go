// Command benchformats posts one file N times, from C concurrent workers, to
// one URL path with one content type, and reports what the server answered
// (accepted, refused by status, transport errors) and the latency. It is the
// client of hack/bench-formats.sh, which runs it against Hearth and Pyroscope
// with the same inputs (JFR on /ingest, OTLP on /v1development/profiles).
//
// The path may hold placeholders, replaced on every request:
//
//	$FROM, $UNTIL  unix seconds: now-10s and now (the /ingest time range)
//	$SERIES        n mod -series (to spread the requests over series)
//
// With -form jfr the file is sent as the part "jfr" of a multipart/form-data
// body (how the Pyroscope Java agent sends a recording; Pyroscope gunzips a
// gzipped recording only there), and -content-type is replaced by the form's.
//
// With -otlp-now the file is an OTLP ExportProfilesServiceRequest whose
// profiles are re-stamped to the current time on every request (both servers
// refuse profiles older than an hour by default; a committed file is older).
//
// The last line of the report is machine-readable (key=value) for the script.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	"google.golang.org/protobuf/proto"
)

type config struct {
	url, path, file, contentType string
	requests, workers, series    int
	duration, timeout            time.Duration
	otlpNow                      bool
	form                         string
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:4040", "base URL of the server")
	flag.StringVar(&c.path, "path", "", "request path and query ($FROM, $UNTIL, $SERIES are replaced per request)")
	flag.StringVar(&c.file, "file", "", "the request body to post (required)")
	flag.StringVar(&c.contentType, "content-type", "application/octet-stream", "Content-Type of the requests")
	flag.IntVar(&c.requests, "n", 100, "requests to send in all (the run stops earlier at -duration)")
	flag.IntVar(&c.workers, "c", 4, "concurrent workers")
	flag.IntVar(&c.series, "series", 10, "distinct values of $SERIES")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "the longest the run may take")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "the longest one request may take")
	flag.BoolVar(&c.otlpNow, "otlp-now", false, "the file is an OTLP ExportProfilesServiceRequest: re-stamp its profiles to now on every request")
	flag.StringVar(&c.form, "form", "", "send the file as this part of a multipart/form-data body (e.g. jfr)")
	flag.Parse()
	if err := run(context.Background(), c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchformats:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, out io.Writer) error {
	if c.file == "" || c.path == "" {
		return errors.New("-file and -path are required")
	}
	if c.requests <= 0 || c.workers <= 0 || c.series <= 0 || c.duration <= 0 {
		return errors.New("-n, -c, -series and -duration must be positive")
	}
	raw, err := os.ReadFile(c.file)
	if err != nil {
		return err
	}
	if c.form != "" {
		if raw, c.contentType, err = multipartBody(c.form, raw); err != nil {
			return err
		}
	}
	body := func(time.Time) ([]byte, error) { return raw, nil }
	if c.otlpNow {
		req := &collectorv1.ExportProfilesServiceRequest{}
		if err := proto.Unmarshal(raw, req); err != nil {
			return fmt.Errorf("%s is not an OTLP ExportProfilesServiceRequest: %w", c.file, err)
		}
		body = func(now time.Time) ([]byte, error) { return restampOTLP(req, now) }
	}
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = c.workers
	client := &http.Client{Transport: tr, Timeout: c.timeout}

	var (
		next   atomic.Int64
		mu     sync.Mutex
		res    = newResult()
		wg     sync.WaitGroup
		stamps sync.Mutex // restampOTLP mutates the shared request
	)
	start := time.Now()
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= int64(c.requests) || ctx.Err() != nil {
					return
				}
				now := time.Now()
				stamps.Lock()
				b, err := body(now)
				stamps.Unlock()
				if err != nil {
					mu.Lock()
					res.add(outcome{err: err})
					mu.Unlock()
					return
				}
				o := post(ctx, client, c.url+expandPath(c.path, n, now, c.series), c.contentType, b)
				if o.err != nil && ctx.Err() != nil {
					o = outcome{abandoned: true} // cut by the end of the run, not a server answer
				}
				mu.Lock()
				res.add(o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.report(out)
	return nil
}

// expandPath replaces the per-request placeholders of a path template.
func expandPath(tmpl string, n int64, now time.Time, series int) string {
	return strings.NewReplacer(
		"$FROM", strconv.FormatInt(now.Add(-10*time.Second).Unix(), 10),
		"$UNTIL", strconv.FormatInt(now.Unix(), 10),
		"$SERIES", strconv.FormatInt(n%int64(series), 10),
	).Replace(tmpl)
}

// multipartBody wraps b as the file part field of a multipart/form-data body
// and returns the body and its content type.
func multipartBody(field string, b []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	part, err := w.CreateFormFile(field, field)
	if err != nil {
		return nil, "", err
	}
	if _, err := part.Write(b); err != nil {
		return nil, "", err
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}

// restampOTLP sets every profile's time to now and marshals the request.
func restampOTLP(req *collectorv1.ExportProfilesServiceRequest, now time.Time) ([]byte, error) {
	for _, rp := range req.GetResourceProfiles() {
		for _, sp := range rp.GetScopeProfiles() {
			for _, p := range sp.GetProfiles() {
				p.TimeUnixNano = uint64(now.UnixNano())
			}
		}
	}
	return proto.Marshal(req)
}

// outcome is one request's result.
type outcome struct {
	status    int // HTTP status, 0 if none arrived
	latency   time.Duration
	err       error  // transport error
	msg       string // the start of a refusal's body
	abandoned bool
}

func post(ctx context.Context, client *http.Client, url, ct string, b []byte) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", ct)
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return outcome{err: err, latency: time.Since(t0)}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	o := outcome{status: resp.StatusCode, latency: time.Since(t0)}
	if resp.StatusCode/100 != 2 {
		o.msg = strings.TrimSpace(string(msg))
	}
	return o
}

type result struct {
	accepted, refused, errors, abandoned int
	byStatus                             map[int]int
	first                                map[int]string // status → first refusal body
	firstErr                             string
	lat                                  []time.Duration
	elapsed                              time.Duration
}

func newResult() *result { return &result{byStatus: map[int]int{}, first: map[int]string{}} }

func (r *result) add(o outcome) {
	switch {
	case o.abandoned:
		r.abandoned++
		return
	case o.err != nil:
		r.errors++
		if r.firstErr == "" {
			r.firstErr = o.err.Error()
		}
	case o.status/100 == 2:
		r.accepted++
	default:
		r.refused++
		r.byStatus[o.status]++
		if _, ok := r.first[o.status]; !ok {
			r.first[o.status] = o.msg
		}
	}
	r.lat = append(r.lat, o.latency)
}

// percentile returns the p-th percentile (0-100) of sorted latencies.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

func (r *result) report(out io.Writer) {
	slices.Sort(r.lat)
	p50, p99, mx := percentile(r.lat, 50), percentile(r.lat, 99), percentile(r.lat, 100)
	rate := 0.0
	if s := r.elapsed.Seconds(); s > 0 {
		rate = float64(r.accepted) / s
	}
	fmt.Fprintf(out, "requests: %d accepted, %d refused, %d transport errors, %d abandoned at the deadline, in %s (%.1f accepted/s)\n",
		r.accepted, r.refused, r.errors, r.abandoned, r.elapsed.Round(time.Millisecond), rate)
	fmt.Fprintf(out, "latency: p50 %s, p99 %s, max %s\n", p50.Round(time.Microsecond), p99.Round(time.Microsecond), mx.Round(time.Microsecond))
	for _, st := range slices.Sorted(maps.Keys(r.byStatus)) {
		fmt.Fprintf(out, "refused %d x%d, first: %s\n", st, r.byStatus[st], r.first[st])
	}
	if r.firstErr != "" {
		fmt.Fprintf(out, "first transport error: %s\n", r.firstErr)
	}
	fmt.Fprintf(out, "RESULT accepted=%d refused=%d errors=%d abandoned=%d elapsed_s=%.3f p50_ms=%.1f p99_ms=%.1f\n",
		r.accepted, r.refused, r.errors, r.abandoned, r.elapsed.Seconds(),
		float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000)
}
