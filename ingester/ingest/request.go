package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
)

// Format is the format parameter of /ingest.
type Format string

const (
	FormatPprof  Format = "pprof"
	FormatFolded Format = "folded" // also accepted as "groups"
	FormatLines  Format = "lines"

	FormatSpeedscope Format = "speedscope"
	FormatTrie       Format = "trie" // also chosen by Content-Type binary/octet-stream+trie
	FormatTree       Format = "tree" // also chosen by Content-Type binary/octet-stream+tree
	FormatJFR        Format = "jfr"
)

// SupportedFormats lists the format parameter values ParseRequest accepts.
var SupportedFormats = []string{"pprof", "folded", "groups", "lines", "speedscope", "trie", "tree", "jfr"}

// DefaultSampleRate is Pyroscope's default sampleRate (Hz).
const DefaultSampleRate = 100

// Request is a parsed /ingest request. Exactly one of Profile and Profiles
// is set: Profile for format pprof, Profiles for every format converted into
// pprof (the text formats give one, JFR one per event type and label set).
type Request struct {
	AppName string      // the application name as sent, before the braces (service_name)
	Labels  []LabelPair // the labels in braces, sorted by name, as sent

	From, Until time.Time // zero when not given

	Format          Format
	SpyName         string
	SampleRate      uint32 // Hz; DefaultSampleRate when not given
	Units           string
	AggregationType string

	// Profile is the pprof profile, decompressed but not decoded
	// (pprofdec.DecodePprof on it only unmarshals).
	Profile []byte
	// SampleTypeConfig is the Go SDK's sample_type_config part, if sent:
	// per sample type name, units/aggregation/display-name overrides. It is
	// parsed and passed on, not applied.
	SampleTypeConfig map[string]SampleTypeConfig

	// Profiles are the body converted into pprof by its format's converter.
	Profiles []Decoded
}

// Decoded is one profile a format converter produced from an /ingest body.
type Decoded struct {
	// Profile is the converted profile; its TimeNanos is From (or 0) and its
	// DurationNanos Until-From unless the format carries its own.
	Profile *googlev1.Profile
	// Labels are the series labels this profile adds to the request's
	// name{...} labels, e.g. __name__ (process_cpu, memory, ...) or a JFR
	// recording's context labels. The request's own labels win where both
	// name one.
	Labels []LabelPair
}

// SampleTypeConfig is one entry of the Go SDK's sample_type_config JSON.
type SampleTypeConfig struct {
	Units       string `json:"units,omitempty"`
	Aggregation string `json:"aggregation,omitempty"`
	DisplayName string `json:"display-name,omitempty"`
	Sampled     bool   `json:"sampled,omitempty"`
	Cumulative  bool   `json:"cumulative,omitempty"`
}

// Limits bound what ParseRequest reads. Zero means no limit.
type Limits struct {
	MaxBodyBytes         int // the request body as received (compressed, multipart and all)
	MaxDecompressedBytes int // the profile after gunzip
}

// UnsupportedFormatError is a format parameter this package does not
// handle; the HTTP layer answers 415.
type UnsupportedFormatError struct{ Format string }

func (e *UnsupportedFormatError) Error() string {
	return fmt.Sprintf("unsupported format %q: supported formats are %s", e.Format, strings.Join(SupportedFormats, ", "))
}

// BadRequestError is any other invalid input: the HTTP layer answers 400.
type BadRequestError struct{ Err error }

func (e *BadRequestError) Error() string { return e.Err.Error() }
func (e *BadRequestError) Unwrap() error { return e.Err }

func badf(format string, args ...any) error {
	return &BadRequestError{fmt.Errorf(format, args...)}
}

// StatusCode maps an error of this package to an HTTP status: 415 for an
// unsupported format, 422 for a body its format's parser refuses
// (UnprocessableError), 400 for anything else non-nil, 200 for nil.
func StatusCode(err error) int {
	var uf *UnsupportedFormatError
	var ue *UnprocessableError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &uf):
		return http.StatusUnsupportedMediaType
	case errors.As(err, &ue):
		return http.StatusUnprocessableEntity
	}
	return http.StatusBadRequest
}

// ParseFormat normalises the format parameter; "" gives "" (decided from
// the body by ParseRequest).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return "", nil
	case "pprof":
		return FormatPprof, nil
	case "folded", "groups":
		return FormatFolded, nil
	case "lines":
		return FormatLines, nil
	case "speedscope":
		return FormatSpeedscope, nil
	case "trie":
		return FormatTrie, nil
	case "tree":
		return FormatTree, nil
	case "jfr":
		return FormatJFR, nil
	}
	return "", &UnsupportedFormatError{Format: s}
}

// ParseTime parses from/until: a Unix time as an integer, whose unit is
// told by its magnitude like Pyroscope does (seconds; above 1e11
// milliseconds; above 1e14 microseconds; above 1e17 nanoseconds: the Go SDK
// sends nanoseconds), or "now", "now-<duration>" (e.g. now-1h), or RFC 3339.
// "" gives the zero time. now is the reference for the relative forms.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "now-"):
		d, err := time.ParseDuration(s[4:])
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("invalid relative time %q: want now-<duration>, e.g. now-1h", s)
		}
		return now.Add(-d), nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		switch {
		case v < 0:
			return time.Time{}, fmt.Errorf("invalid time %q: negative", s)
		case v > 1e17:
			return time.Unix(0, v), nil
		case v > 1e14:
			return time.UnixMicro(v), nil
		case v > 1e11:
			return time.UnixMilli(v), nil
		default:
			return time.Unix(v, 0), nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want Unix seconds, milliseconds, microseconds or nanoseconds, now[-duration] or RFC 3339", s)
}

// ParseParams parses the query parameters into a Request without a body.
func ParseParams(q url.Values, now time.Time) (*Request, error) {
	r := &Request{SampleRate: DefaultSampleRate}
	name := q.Get("name")
	if name == "" {
		return nil, badf("missing name parameter (the application name, e.g. myapp{env=prod})")
	}
	var err error
	if r.AppName, r.Labels, err = ParseName(name); err != nil {
		return nil, &BadRequestError{err}
	}
	if r.From, err = ParseTime(q.Get("from"), now); err != nil {
		return nil, badf("from: %w", err)
	}
	if r.Until, err = ParseTime(q.Get("until"), now); err != nil {
		return nil, badf("until: %w", err)
	}
	if !r.From.IsZero() && !r.Until.IsZero() && r.Until.Before(r.From) {
		return nil, badf("until (%s) is before from (%s)", r.Until.UTC().Format(time.RFC3339), r.From.UTC().Format(time.RFC3339))
	}
	if s := strings.TrimSpace(q.Get("sampleRate")); s != "" {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil || v == 0 {
			return nil, badf("invalid sampleRate %q: want a positive integer (Hz)", s)
		}
		r.SampleRate = uint32(v)
	}
	if r.Format, err = ParseFormat(q.Get("format")); err != nil {
		return nil, err
	}
	r.SpyName = q.Get("spyName")
	r.Units = q.Get("units")
	r.AggregationType = q.Get("aggregationType")
	return r, nil
}

// ParseRequest parses a POST /ingest request: query parameters, then the
// body, which is either the profile itself or multipart/form-data with the
// profile in the part its format names ("profile" for pprof, plus the
// optional "sample_type_config"). Gzip is recognised by its magic bytes
// only. With no format parameter, a body that is gzip, multipart or starts
// like a pprof message (0x0a) is pprof, any other is folded. now is used for
// relative times.
func ParseRequest(req *http.Request, lim Limits, now time.Time) (*Request, error) {
	r, err := ParseParams(req.URL.Query(), now)
	if err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, badf("empty request body")
	}
	var body io.Reader = req.Body
	if lim.MaxBodyBytes > 0 {
		body = io.LimitReader(req.Body, int64(lim.MaxBodyBytes)+1)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, badf("reading the request body: %w", err)
	}
	if lim.MaxBodyBytes > 0 && len(raw) > lim.MaxBodyBytes {
		return nil, badf("request body exceeds the limit of %d bytes", lim.MaxBodyBytes)
	}
	r.Format = contentTypeFormat(r.Format, req.Header.Get("Content-Type"))
	var parts Parts
	if mt, params, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err == nil && mt == "multipart/form-data" {
		if parts, err = readMultipart(raw, params["boundary"]); err != nil {
			if r.Format == FormatJFR {
				return nil, &UnprocessableError{err} // Pyroscope's JFR path: 422
			}
			return nil, err
		}
	}
	if err := r.SetBody(raw, parts, lim.MaxDecompressedBytes); err != nil {
		return nil, err
	}
	return r, nil
}

// Parts are the parts of a multipart/form-data /ingest body by form name
// (profile, prev_profile, sample_type_config, jfr, labels, ...); nil when
// the body is not multipart.
type Parts map[string][]byte

// SetBody decodes the body into r according to r.Format (deciding it first
// when empty), gunzipping (magic bytes) with the given decompressed-size
// limit. parts is the multipart body's parts (nil: body is the profile
// itself); each format reads the parts it knows.
func (r *Request) SetBody(body []byte, parts Parts, maxDecompressed int) error {
	if r.Format == FormatJFR {
		return r.setJFR(body, parts, maxDecompressed)
	}
	if parts != nil {
		if err := r.setSampleTypeConfig(parts["sample_type_config"]); err != nil {
			return err
		}
		if r.Format == "" {
			r.Format = FormatPprof
		}
		if r.Format == FormatPprof && len(parts["prev_profile"]) > 0 {
			// Pyroscope refuses the cumulative profiles of old pyroscope-go clients (422).
			return badf("a prev_profile part (cumulative profiles of old pyroscope-go clients) is not supported: update github.com/grafana/pyroscope-go")
		}
		body = parts[partName(r.Format)]
	}
	if len(body) == 0 {
		if parts != nil {
			return badf("multipart body has no (or an empty) %s part", partName(r.Format))
		}
		return badf("empty profile")
	}
	if r.Format == "" {
		if pprofdec.IsGzip(body) || body[0] == 0x0a {
			r.Format = FormatPprof
		} else {
			r.Format = FormatFolded
		}
	}
	data, err := pprofdec.Gunzip(body, maxDecompressed)
	if err != nil {
		return &BadRequestError{err}
	}
	switch r.Format {
	case FormatPprof:
		r.Profile = data
		return nil
	case FormatFolded, FormatLines:
		kind, err := r.ogKind()
		if err != nil {
			return err
		}
		t, d := r.timeRange()
		p, err := ParseFolded(data, kind, r.Format == FormatLines, t, d)
		if err != nil {
			return badf("%s profile: %w", r.Format, err)
		}
		r.Profiles = []Decoded{{Profile: p, Labels: ogLabels(kind)}}
		return nil
	case FormatSpeedscope:
		return r.setSpeedscope(data)
	case FormatTrie, FormatTree:
		return r.setTrie(data)
	}
	return &UnsupportedFormatError{Format: string(r.Format)}
}

// partName is the multipart part that carries a format's profile.
func partName(f Format) string {
	if f == FormatJFR {
		return "jfr"
	}
	return "profile"
}

// timeRange is the profile's time and duration from from/until (0 when not given).
func (r *Request) timeRange() (timeNanos, durationNanos int64) {
	if !r.From.IsZero() {
		timeNanos = r.From.UnixNano()
		if !r.Until.IsZero() {
			durationNanos = r.Until.Sub(r.From).Nanoseconds()
		}
	}
	return timeNanos, durationNanos
}

func (r *Request) setSampleTypeConfig(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, &r.SampleTypeConfig); err != nil {
		return badf("invalid sample_type_config JSON: %w", err)
	}
	return nil
}

// readMultipart reads every part of a multipart/form-data body (at most 16,
// each name once).
func readMultipart(body []byte, boundary string) (Parts, error) {
	if boundary == "" {
		return nil, badf("multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	parts := Parts{}
	for n := 0; ; n++ {
		if n >= 16 {
			return nil, badf("multipart body has more than 16 parts")
		}
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, badf("invalid multipart body: %w", err)
		}
		name := p.FormName()
		if _, dup := parts[name]; dup {
			return nil, badf("multipart body has more than one %s part", name)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, badf("invalid multipart body: %w", err)
		}
		if b == nil {
			b = []byte{}
		}
		parts[name] = b
	}
	return parts, nil
}
