// Package load pushes a directory of pprof files at an ingester over
// push.v1 (connect, gRPC or gRPC-web) and measures what happened: the
// library behind `hearth load`.
//
// Each push carries one file, re-stamped to the current time, as one series
// with labels service_name=<file name without .pb/.pprof/.gz>, __name__ from
// its sample types (ingest.ProfileName), instance=i-<n mod Series>, and a
// fresh UUID as the profile ID. Every acknowledged push is reported to
// Config.Acked, so tests can check that all of them are queryable.
//
// Re-stamping is cheap: each file is decoded once, marshalled without
// time_nanos and gzipped once; a push sends that gzip member followed by a
// tiny second member holding only the time_nanos field. Gzip readers
// (Go's, klauspost's, zlib's gunzip) concatenate members, and protobuf
// parsers let a later field win, so the ingester sees the whole profile with
// the new timestamp.
package load

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/klauspost/compress/gzip"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
)

// Config says what to push, where and how fast.
type Config struct {
	URL      string        // base URL of the ingester, e.g. http://localhost:4040
	Dir      string        // directory of pprof files (gzip or not); subdirectories are ignored
	Rate     float64       // pushes per second in total; 0 = as fast as Workers allow
	Workers  int           // concurrent pushes; default 4 (with Rate: enough to keep the rate)
	Duration time.Duration // how long to run; 0 = until ctx is done or MaxPushes is reached
	// MaxPushes stops after this many pushes were attempted (0 = no limit).
	MaxPushes int64
	Series    int // number of distinct instance label values; default 10
	// SeriesPerPush is how many series one push request carries (default 1):
	// the same profile under consecutive instance values, each its own
	// profile id. Many series cheaply, for cardinality measurements.
	SeriesPerPush int
	Tenant        string // X-Scope-OrgID; empty = header not sent
	Service       string // service_name of every push; empty = from the file name
	Protocol      string // "connect" (default), "grpc" or "grpcweb"
	H2C           bool   // use HTTP/2 without TLS (h2c) instead of HTTP/1.1 for http:// URLs

	// HTTPClient overrides the client built from the settings above.
	HTTPClient *http.Client
	// Out receives warnings, a progress line each second and nothing else;
	// nil = discard.
	Out io.Writer
	// Acked, if set, is called for every acknowledged push, concurrently from
	// the workers (it must be safe for concurrent use; see AckLog).
	Acked func(Ack)
	// Now is the clock for timestamps (default time.Now).
	Now func() time.Time
}

// Ack records one acknowledged push.
type Ack struct {
	ID        string               // RawSample.ID, a UUID
	Labels    []*typesv1.LabelPair // the series labels sent, sorted by name
	TimeNanos int64                // the profile's (re-stamped) time_nanos
	File      string               // the source file name
}

// AckLog collects Acks; its Record method is a ready-made Config.Acked.
type AckLog struct {
	mu   sync.Mutex
	acks []Ack
}

// Record appends a.
func (l *AckLog) Record(a Ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

// Acks returns a copy of what was recorded.
func (l *AckLog) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Summary is the outcome of a run.
type Summary struct {
	Files          int               // files pushed (decodable)
	Skipped        []string          // files skipped because they could not be decoded
	Pushes         int64             // pushes attempted (acknowledged or failed)
	Abandoned      int64             // pushes cut short by the end of the run: the server may or may not have stored them
	Profiles       int64             // profiles acknowledged (pushes × SeriesPerPush)
	Errors         int64             // pushes failed
	ErrorsByCode   map[string]int64  // connect code (e.g. invalid_argument) of an answer, or "transport" (no answer: reset, refused, timed out) -> count
	FirstErrors    map[string]string // connect code -> the first error message seen with it
	ErrorKinds     map[string]int64  // error message with its numbers elided -> count (the kinds of refusals)
	Bytes          int64             // compressed request payload bytes of acknowledged pushes
	Elapsed        time.Duration
	ProfilesPerSec float64
	MBPerSec       float64       // Bytes / 1e6 / seconds
	P50, P99, Max  time.Duration // latency of all pushes (acknowledged or not)
}

// String renders the summary as the final report of `hearth load`.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "files: %d (skipped %d)\n", s.Files, len(s.Skipped))
	fmt.Fprintf(&b, "profiles: %d acknowledged, %d errors in %s\n", s.Profiles, s.Errors, s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "throughput: %.1f profiles/s, %.2f MB/s (compressed)\n", s.ProfilesPerSec, s.MBPerSec)
	fmt.Fprintf(&b, "latency: p50 %s, p99 %s, max %s\n", s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Max.Round(time.Microsecond))
	if len(s.ErrorsByCode) > 0 {
		codes := slices.Sorted(maps.Keys(s.ErrorsByCode))
		b.WriteString("errors by code:")
		for _, c := range codes {
			fmt.Fprintf(&b, " %s=%d", c, s.ErrorsByCode[c])
		}
		b.WriteByte('\n')
		for _, c := range codes {
			if msg := s.FirstErrors[c]; msg != "" {
				fmt.Fprintf(&b, "first %s error: %s\n", c, msg)
			}
		}
		kinds := slices.SortedFunc(maps.Keys(s.ErrorKinds), func(a, b string) int { return int(s.ErrorKinds[b] - s.ErrorKinds[a]) })
		for _, k := range kinds[:min(len(kinds), 5)] {
			fmt.Fprintf(&b, "error kind (%d): %s\n", s.ErrorKinds[k], k)
		}
	}
	return b.String()
}

// digits elides the numbers of an error message (ErrorKinds).
var digits = regexp.MustCompile(`[0-9]+`)

// file is one prepared corpus file.
type file struct {
	name    string
	service string
	metric  string
	gz      []byte // gzip member of the profile without time_nanos
	// ptype is the profile type of its first sample type, perProfile its
	// total in one profile (what Check expects of every acknowledged push).
	ptype      string
	perProfile int64
}

// Prepare reads and prepares every regular file of dir; undecodable files
// are reported to warn (one line each) and skipped.
func prepare(dir string, warn io.Writer) ([]*file, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var files []*file
	var skipped []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		p, err := pprofdec.DecodePprof(b, 256<<20)
		if err == nil && len(p.SampleType) == 0 {
			err = errors.New("no sample types")
		}
		if err != nil {
			fmt.Fprintf(warn, "warning: skipping %s: %v\n", e.Name(), err)
			skipped = append(skipped, e.Name())
			continue
		}
		p.TimeNanos = 0
		raw, err := p.MarshalVT()
		if err != nil {
			fmt.Fprintf(warn, "warning: skipping %s: re-marshal: %v\n", e.Name(), err)
			skipped = append(skipped, e.Name())
			continue
		}
		f := &file{
			name:    e.Name(),
			service: ServiceName(e.Name()),
			metric:  ingest.ProfileName(p),
			gz:      gzipBytes(raw),
		}
		st, pt := p.SampleType[0], p.GetPeriodType()
		str := func(i int64) string {
			if i >= 0 && i < int64(len(p.StringTable)) {
				return p.StringTable[i]
			}
			return ""
		}
		f.ptype = f.metric + ":" + str(st.Type) + ":" + str(st.Unit) + ":" + str(pt.GetType()) + ":" + str(pt.GetUnit())
		for _, sm := range p.Sample {
			if len(sm.Value) > 0 {
				f.perProfile += sm.Value[0]
			}
		}
		files = append(files, f)
	}
	return files, skipped, nil
}

// ServiceName is the file name without its .gz, .pb, .pprof extensions.
func ServiceName(name string) string {
	for {
		trimmed := name
		for _, ext := range []string{".gz", ".pb", ".pprof"} {
			trimmed = strings.TrimSuffix(trimmed, ext)
		}
		if trimmed == name || trimmed == "" {
			return name
		}
		name = trimmed
	}
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// timeMember returns a gzip member holding protobuf field 9 (time_nanos).
func timeMember(ns int64) []byte {
	var pb [1 + binary.MaxVarintLen64]byte
	pb[0] = 9 << 3 // field 9, wire type 0 (varint)
	n := binary.PutUvarint(pb[1:], uint64(ns))
	// A stored (uncompressed) deflate block: cheaper than running a compressor.
	payload := pb[:1+n]
	var out bytes.Buffer
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // header: deflate, no flags, unknown OS
	out.WriteByte(1)                                         // BFINAL=1, BTYPE=00 (stored)
	var l [4]byte
	binary.LittleEndian.PutUint16(l[0:], uint16(len(payload)))
	binary.LittleEndian.PutUint16(l[2:], ^uint16(len(payload)))
	out.Write(l[:])
	out.Write(payload)
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[0:], crc32IEEE(payload))
	binary.LittleEndian.PutUint32(tr[4:], uint32(len(payload)))
	out.Write(tr[:])
	return out.Bytes()
}

// Body is the gzip payload of one push of f at time ns: exported for the
// benchmark and tests.
func (f *file) body(ns int64) []byte {
	tm := timeMember(ns)
	b := make([]byte, 0, len(f.gz)+len(tm))
	return append(append(b, f.gz...), tm...)
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("no URL")
	}
	if c.Dir == "" {
		return errors.New("no directory")
	}
	if c.Rate < 0 || c.Workers < 0 || c.Series < 0 || c.SeriesPerPush < 0 || c.Duration < 0 || c.MaxPushes < 0 {
		return errors.New("rate, workers, series, series per push, duration and max pushes must not be negative")
	}
	if c.SeriesPerPush == 0 {
		c.SeriesPerPush = 1
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.Series == 0 {
		c.Series = 10
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func (c *Config) client() (pushv1connect.PusherServiceClient, error) {
	hc := c.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.Workers
		tr.MaxConnsPerHost = 0
		if c.H2C {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr.Protocols = &p
		}
		hc = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	var opts []connect.ClientOption
	switch c.Protocol {
	case "", "connect":
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpcweb", "grpc-web":
		opts = append(opts, connect.WithGRPCWeb())
	default:
		return nil, fmt.Errorf("unknown protocol %q: want connect, grpc or grpcweb", c.Protocol)
	}
	return pushv1connect.NewPusherServiceClient(hc, c.URL, opts...), nil
}

type stats struct {
	pushes, profiles, errors, bytes, abandoned atomic.Int64
	mu                                         sync.Mutex
	codes                                      map[string]int64
	first                                      map[string]string
	kinds                                      map[string]int64
	lat                                        []time.Duration
}

// Run pushes until cfg.Duration passes, cfg.MaxPushes pushes were made or
// ctx is done, whichever comes first, and returns the summary. It returns an
// error only when it cannot start (bad config, unreadable or empty directory).
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	client, err := cfg.client()
	if err != nil {
		return Summary{}, err
	}
	files, skipped, err := prepare(cfg.Dir, cfg.Out)
	if err != nil {
		return Summary{}, err
	}
	if len(files) == 0 {
		return Summary{Skipped: skipped}, fmt.Errorf("no decodable pprof files in %s", cfg.Dir)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	st := &stats{codes: map[string]int64{}, first: map[string]string{}, kinds: map[string]int64{}}
	var seq atomic.Int64
	// next reserves the next push number, or returns false when done.
	next := func() (int64, bool) {
		n := seq.Add(1) - 1
		if cfg.MaxPushes > 0 && n >= cfg.MaxPushes {
			return 0, false // in-flight pushes finish; nothing new starts
		}
		return n, true
	}
	var tokens chan struct{}
	if cfg.Rate > 0 {
		tokens = make(chan struct{}, cfg.Workers)
		go pace(ctx, cfg.Rate, tokens)
	}

	start := time.Now()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(ctx, cfg.Out, st, start)
	}()

	var wg sync.WaitGroup
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			defer func() {
				st.mu.Lock()
				st.lat = append(st.lat, lat...)
				st.mu.Unlock()
			}()
			for {
				if tokens != nil {
					select {
					case <-ctx.Done():
						return
					case <-tokens:
					}
				}
				if ctx.Err() != nil {
					return
				}
				n, ok := next()
				if !ok {
					return
				}
				d := push(ctx, client, &cfg, files[n%int64(len(files))], n, st)
				if d >= 0 {
					lat = append(lat, d)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	<-progressDone

	s := Summary{
		Files: len(files), Skipped: skipped,
		Pushes: st.pushes.Load(), Abandoned: st.abandoned.Load(), Profiles: st.profiles.Load(), Errors: st.errors.Load(),
		ErrorsByCode: st.codes, FirstErrors: st.first, ErrorKinds: st.kinds, Bytes: st.bytes.Load(), Elapsed: elapsed,
	}
	if sec := elapsed.Seconds(); sec > 0 {
		s.ProfilesPerSec = float64(s.Profiles) / sec
		s.MBPerSec = float64(s.Bytes) / 1e6 / sec
	}
	sort.Slice(st.lat, func(i, j int) bool { return st.lat[i] < st.lat[j] })
	if n := len(st.lat); n > 0 {
		s.P50 = st.lat[(n-1)*50/100]
		s.P99 = st.lat[(n-1)*99/100]
		s.Max = st.lat[n-1]
	}
	return s, nil
}

// push sends one profile; it returns the latency, or -1 if the push was
// abandoned because the run ended.
func push(ctx context.Context, client pushv1connect.PusherServiceClient, cfg *Config, f *file, n int64, st *stats) time.Duration {
	ts := cfg.Now().UnixNano()
	body := f.body(ts)
	// Push n carries the instances n*SeriesPerPush .. +SeriesPerPush-1 (mod Series).
	k := int64(max(cfg.SeriesPerPush, 1))
	msg := &pushv1.PushRequest{Series: make([]*pushv1.RawProfileSeries, k)}
	acks := make([]Ack, k)
	for j := range k {
		labels := []*typesv1.LabelPair{
			{Name: "__name__", Value: f.metric},
			{Name: "instance", Value: fmt.Sprintf("i-%d", (n*k+j)%int64(cfg.Series))},
			{Name: "service_name", Value: cfg.service(f)},
		}
		id := uuid.NewString()
		msg.Series[j] = &pushv1.RawProfileSeries{Labels: labels, Samples: []*pushv1.RawSample{{RawProfile: body, ID: id}}}
		acks[j] = Ack{ID: id, Labels: labels, TimeNanos: ts, File: f.name}
	}
	req := connect.NewRequest(msg)
	if cfg.Tenant != "" {
		req.Header().Set("X-Scope-OrgID", cfg.Tenant)
	}
	t0 := time.Now()
	_, err := client.Push(ctx, req)
	d := time.Since(t0)
	if err != nil && (ctx.Err() != nil || cutByRunDeadline(ctx, err)) {
		st.abandoned.Add(1)
		return -1 // cut short by the end of the run: neither success nor error
	}
	st.pushes.Add(1)
	if err != nil {
		st.errors.Add(1)
		code := "unknown"
		if ce := new(connect.Error); errors.As(err, &ce) {
			code = ce.Code().String()
		}
		if !connect.IsWireError(err) {
			// No answer from the server (a reset, a refused connection, a
			// timeout): told apart from an answered 503 (unavailable).
			code = "transport"
		}
		st.mu.Lock()
		st.codes[code]++
		if len(st.kinds) < 100 {
			st.kinds[digits.ReplaceAllString(err.Error(), "N")]++
		}
		if _, seen := st.first[code]; !seen {
			st.first[code] = err.Error()
		}
		st.mu.Unlock()
		return d
	}
	st.profiles.Add(k)
	st.bytes.Add(k * int64(len(body)))
	if cfg.Acked != nil {
		for _, a := range acks {
			cfg.Acked(a)
		}
	}
	return d
}

func (c *Config) service(f *file) string {
	if c.Service != "" {
		return c.Service
	}
	return f.service
}

// pace puts a token into tokens rate times per second until ctx is done.
func pace(ctx context.Context, rate float64, tokens chan<- struct{}) {
	interval := time.Duration(float64(time.Second) / rate)
	if interval <= 0 {
		interval = time.Nanosecond
	}
	start := time.Now()
	var sent int64
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(now.Sub(start)/interval) + 1
			for sent < due {
				select {
				case tokens <- struct{}{}:
					sent++
				case <-ctx.Done():
					return
				default:
					sent = due // workers are saturated: don't build a backlog
				}
			}
		}
	}
}

func progress(ctx context.Context, out io.Writer, st *stats, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastP, lastB int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p, b := st.profiles.Load(), st.bytes.Load()
			fmt.Fprintf(out, "%6.0fs  %8d profiles/s  %7.2f MB/s  %d errors\n",
				now.Sub(start).Seconds(), p-lastP, float64(b-lastB)/1e6, st.errors.Load())
			lastP, lastB = p, b
		}
	}
}

// cutByRunDeadline reports an error the server returned because the run's deadline
// (propagated with the request) passed there a moment before it passed here.
func cutByRunDeadline(ctx context.Context, err error) bool {
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > 100*time.Millisecond {
		return false
	}
	code := connect.CodeOf(err)
	return code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded
}
