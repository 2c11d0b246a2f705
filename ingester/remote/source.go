// Package remote reads the other ingesters: a querier.Source that fans a
// query out to every instance of the ring's read set (but this one, which
// the local store source covers) over POST /internal/v1/select and
// /internal/v1/series-labels, and the handler that serves those endpoints
// from the local store. Replicas return the same profiles; the querier
// counts each (profile id, series) once.
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/transport"
)

// ReadRing gives the instances a read must ask.
type ReadRing interface {
	ReadSet() (distributor.ReplicationSet, error)
}

// SourceOptions configure a Source.
type SourceOptions struct {
	Ring   ReadRing
	Self   string       // this instance's ring ID: not asked
	Client *http.Client // nil: transport.DefaultClient()
	// Scheme of the instances' internal addresses: "https" when Client dials
	// TLS, "" or "http" otherwise.
	Scheme string
	// Timeout bounds one instance's answer (0: 30s).
	Timeout time.Duration
	// MaxResponseBytes bounds one instance's answer, on the wire and
	// decompressed (0: DefaultMaxResponseBytes).
	MaxResponseBytes int64
	Logger           *slog.Logger
	Registerer       prometheus.Registerer
}

// Source implements querier.Source over the other ingesters.
type Source struct {
	o         SourceOptions
	client    *http.Client
	requests  *prometheus.CounterVec
	tolerated prometheus.Counter
}

var _ querier.Source = (*Source)(nil)

// NewSource returns a remote source.
func NewSource(o SourceOptions) *Source {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Source{o: o, client: o.Client,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_querier_remote_requests_total", Help: "Reads sent to other ingesters, by endpoint (select, series_labels) and result (ok, error).",
		}, []string{"endpoint", "result"}),
		tolerated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_querier_tolerated_replica_failures_total", Help: "Ingesters that failed a read the query still answered without them.",
		}),
	}
	if s.client == nil {
		s.client = transport.DefaultClient()
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.requests, s.tolerated)
	}
	return s
}

// Select implements querier.Source.
func (s *Source) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	req := s.request(ctx, tenant, match, start, end)
	req.ProfileType = ptype
	parts, err := fanout(ctx, s, SelectPath, "select", req, func(b []byte) ([]head.Selection, error) {
		return DecodeSelections(b, s.o.MaxResponseBytes)
	})
	if err != nil {
		return nil, err
	}
	var out []head.Selection
	for _, sels := range parts {
		for _, sel := range sels {
			if match != nil {
				sel = filterSeries(sel, match)
			}
			if len(sel.Series) > 0 {
				out = append(out, sel)
			}
		}
	}
	return out, nil
}

// SeriesLabels implements querier.Source.
func (s *Source) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	parts, err := fanout(ctx, s, SeriesLabelsPath, "series_labels", s.request(ctx, tenant, match, start, end), func(b []byte) ([]model.Labels, error) {
		return DecodeLabels(b, s.o.MaxResponseBytes)
	})
	if err != nil {
		return nil, err
	}
	var out []model.Labels
	seen := map[uint64]struct{}{}
	for _, all := range parts {
		for _, ls := range all {
			if match != nil && !match(ls) {
				continue
			}
			h := ls.Hash()
			if _, dup := seen[h]; dup {
				continue
			}
			seen[h] = struct{}{}
			out = append(out, ls)
		}
	}
	return out, nil
}

func (s *Source) request(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) Request {
	req := Request{Tenant: tenant, Start: start, End: end}
	if match != nil {
		if sels, ok := SelectorsFrom(ctx); ok {
			req.Selectors = sels
		} else {
			s.o.Logger.Debug("remote read without selectors: fetching every series and filtering here")
		}
	}
	return req
}

func filterSeries(sel head.Selection, match func(model.Labels) bool) head.Selection {
	kept := sel.Series[:0:0]
	for _, sr := range sel.Series {
		if match(sr.Labels) {
			kept = append(kept, sr)
		}
	}
	sel.Series = kept
	return sel
}

// fanout asks every other instance of the read set and tolerates the
// failures the set does.
func fanout[T any](ctx context.Context, s *Source, path, endpoint string, req Request, decode func([]byte) (T, error)) ([]T, error) {
	rs, err := s.o.Ring.ReadSet()
	if err != nil {
		return nil, fmt.Errorf("reading the ring: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		out    []T
		failed []distributor.Instance
		errs   []error
		wg     sync.WaitGroup
	)
	for _, in := range rs.Instances {
		if in.ID == s.o.Self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := call(ctx, s, in, path, body, decode)
			res := "ok"
			if err != nil {
				res = "error"
			}
			s.requests.WithLabelValues(endpoint, res).Inc()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, in)
				errs = append(errs, err)
				return
			}
			out = append(out, v)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(failed) == 0 {
		return out, nil
	}
	if rs.Tolerates(failed) {
		s.tolerated.Add(float64(len(failed)))
		for i, in := range failed {
			s.o.Logger.Warn("an ingester failed a read; answering without it", "instance", in.ID, "addr", in.Addr, "endpoint", endpoint, "err", errs[i])
		}
		return out, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d ingesters failed to answer", len(failed), len(rs.Instances))
	if rs.MaxUnavailableZones > 0 {
		fmt.Fprintf(&b, " (at most %d zone(s) may fail)", rs.MaxUnavailableZones)
	} else {
		fmt.Fprintf(&b, " (at most %d may)", rs.MaxErrors)
	}
	b.WriteString(": ")
	for i, in := range failed {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s): %v", in.ID, in.Addr, errs[i])
	}
	return nil, errors.New(b.String())
}

func call[T any](ctx context.Context, s *Source, in distributor.Instance, path string, body []byte, decode func([]byte) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, transport.BaseURL(s.o.Scheme, in.Addr)+path, bytes.NewReader(body))
	if err != nil {
		return zero, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return zero, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return zero, transport.ReadError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, s.o.MaxResponseBytes+1))
	if err != nil {
		return zero, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(b)) > s.o.MaxResponseBytes {
		return zero, fmt.Errorf("the answer is more than %.1f MiB (querier.max-remote-response-bytes): narrow the query's time range or label selector", float64(s.o.MaxResponseBytes)/(1<<20))
	}
	return decode(b)
}
