package push

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/usage"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// ServeHTTP serves POST /ingest, the API the Pyroscope SDKs use.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	t, err := tenant.FromHeader(r.Header, h.Multitenancy)
	if err != nil {
		http.Error(w, err.Error(), HTTPStatus(TenantError(err).Code()))
		return
	}
	lim := h.Limits.For(t)
	rec := h.Usage.Begin(t, lim.DistributorUsageGroups)
	maxBody := lim.MaxProfileSizeBytes
	if maxBody > 0 {
		maxBody += 1 << 20 // multipart framing and the sample type config
	}
	body := usage.CountBody(r.Body)
	if r.Body != nil {
		r.Body = body
	}
	// The body is read before the decode slot is taken (a slow client never
	// holds one); ParseRequest then reads it from memory, limits included.
	if r.Body != nil {
		var limited io.Reader = r.Body
		if maxBody > 0 {
			limited = io.LimitReader(r.Body, int64(maxBody)+1)
		}
		raw, err := io.ReadAll(limited)
		var rest io.Reader = bytes.NewReader(raw)
		if err != nil { // ParseRequest answers it, as it would have
			rest = io.MultiReader(rest, errReader{err})
		}
		r.Body = io.NopCloser(rest)
	}
	release, err := EnterDecode(r.Context())
	if err != nil {
		rec.Received(receivedBytes(body, r))
		err = h.reject(rec, err)
		http.Error(w, err.Error(), HTTPStatus(connect.CodeOf(err)))
		return
	}
	defer release()
	req, err := ingest.ParseRequest(r, ingest.Limits{MaxBodyBytes: maxBody, MaxDecompressedBytes: lim.MaxProfileSizeBytes}, h.Now())
	rec.Received(receivedBytes(body, r))
	if err != nil {
		h.refuseUnparsed(rec, r, err, maxBody)
		http.Error(w, err.Error(), parseStatus(err, r, h.Now()))
		return
	}
	if req.Format != ingest.FormatPprof {
		rec.SetFormat(string(req.Format)) // one body, maybe many profiles
	}
	labels, err := ingestLabels(req)
	var fallback int64
	if !req.From.IsZero() {
		fallback = req.From.UnixNano()
	}
	var profiles []Profile
	switch {
	case err != nil:
		err = &validation.Error{Reason: validation.InvalidLabelName, Msg: err.Error()}
	case req.Profiles != nil:
		items, raws := h.addDecoded(rec, labels, req.Profiles)
		profiles, err = h.finishDecoded(lim, items, raws, req.Profiles, fallback)
	default:
		var p Profile
		var a *pprofdec.Arena
		p, a, err = h.finishIngestPprof(lim, rec.Add(labels, body.N()), req)
		defer a.Release() // after the store: the profile dies with the request
		profiles = []Profile{p}
	}
	if err == nil {
		err = h.store(r.Context(), rec, lim, profiles, body.N())
	} else {
		err = h.reject(rec, err)
	}
	if err != nil {
		var ce *connect.Error
		code := connect.CodeInternal
		if errors.As(err, &ce) {
			code = ce.Code()
		}
		http.Error(w, err.Error(), ingestStatus(code, req.Format))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// ingestLabels are the series labels of an /ingest request's name and
// parameters.
func ingestLabels(req *ingest.Request) (model.Labels, error) {
	sent := make([]model.Label, 0, len(req.Labels))
	for _, l := range req.Labels {
		sent = append(sent, model.Label{Name: l.Name, Value: l.Value})
	}
	labels, err := normalize.IngestLabels(req.AppName, sent, req.SpyName)
	if err == nil && isTextFormat(req.Format) {
		labels = normalize.TextLabels(labels, req.AppName, model.Labels(sent).Has(model.LabelServiceName))
	}
	return labels, err
}

// refuseUnparsed counts an /ingest request whose body did not parse, under
// its name's labels when the parameters parse (usage groups), with the
// reason: the body or decompressed size limit, the format, or a malformed
// profile.
func (h *Handler) refuseUnparsed(rec *usage.Request, r *http.Request, err error, maxBody int) {
	reason := validation.InvalidProfile
	var uf *ingest.UnsupportedFormatError
	switch {
	case errors.As(err, &uf):
		reason = validation.UnsupportedFormat
	case maxBody > 0 && rec.ReceivedBytes() > maxBody:
		reason = validation.BodyTooLarge
	case errors.Is(err, pprofdec.ErrTooLarge):
		reason = validation.ProfileTooLarge
	}
	q := r.URL.Query()
	if uf != nil {
		q.Del("format") // the name's labels still tell the usage group
	}
	if req, perr := ingest.ParseParams(q, h.Now()); perr == nil {
		if req.Format != "" && req.Format != ingest.FormatPprof {
			rec.SetFormat(string(req.Format))
		}
		if labels, lerr := ingestLabels(req); lerr == nil {
			rec.Add(labels, rec.ReceivedBytes())
		}
	}
	rec.End(string(reason), h.Now())
	h.Logger.Debug("push rejected", "tenant", rec.Tenant(), "reason", reason, "err", err)
}

// receivedBytes is what a request was received with: the bytes read from
// its body, or its Content-Length when it was refused before the body was
// read.
func receivedBytes(body *usage.Body, r *http.Request) int {
	if n := body.N(); n > 0 || r.ContentLength <= 0 {
		return n
	}
	return int(r.ContentLength)
}

// finishIngestPprof decodes and completes a pprof profile sent to /ingest
// with what Pyroscope does there before its distributor: the time of older
// agents, the scripting spies' function names, the .NET agent's repairs,
// the profile name from the sample types.
// The profile is decoded into a pooled arena, which the caller releases once
// it is stored (also after an error).
func (h *Handler) finishIngestPprof(lim *validation.Limits, it *usage.Item, req *ingest.Request) (Profile, *pprofdec.Arena, error) {
	it.Size = len(req.Profile) // gunzipped by ParseRequest
	prof, a, err := pprofdec.Decode(req.Profile, lim.MaxProfileSizeBytes)
	if err != nil {
		return Profile{}, a, &validation.Error{Reason: validation.InvalidProfile, Msg: "cannot decode the pprof profile: " + err.Error()}
	}
	from := req.From
	if from.IsZero() {
		from = h.Now()
	}
	changed := normalize.IngestTime(prof, from)
	spy := normalize.SpyName(req.SpyName)
	if h.Normalize.ScriptingFunctionNames {
		changed = normalize.ScriptingFunctionNames(prof, spy) || changed
	}
	if normalize.IsDotnet(spy, func(n string) bool { _, ok := req.SampleTypeConfig[n]; return ok }) {
		changed = normalize.RepairDotnetFunctionIDs(prof) || changed
		changed = normalize.DotnetSampleTypes(prof) || changed
	}
	var display func(string) (string, bool)
	if req.SampleTypeConfig != nil {
		display = func(t string) (string, bool) { c, ok := req.SampleTypeConfig[t]; return c.DisplayName, ok }
	}
	// A copy: the name may be one of the profile's strings (see finish).
	it.Labels = it.Labels.Clone().Set(model.LabelProfileName, strings.Clone(normalize.IngestProfileName(prof, display)))
	raw := req.Profile
	if changed {
		raw = nil
	}
	p, err := h.finish(lim, it, prof, a, raw, "", 0)
	return p, a, err
}

// isTextFormat reports the formats Pyroscope's older agents send as text
// or tries, whose series labels Pyroscope builds differently.
func isTextFormat(f ingest.Format) bool {
	switch f {
	case ingest.FormatFolded, ingest.FormatLines, "trie", "tree":
		return true
	}
	return false
}

// parseStatus is the status of a request ParseRequest refused, as Pyroscope
// answers it: 400 for the query parameters (a bad name), 415 for a format
// it does not know, 422 for a body it cannot convert (a corrupt profile, a
// cumulative pprof with prev_profile).
func parseStatus(err error, r *http.Request, now time.Time) int {
	if code := ingest.StatusCode(err); code != http.StatusBadRequest {
		return code
	}
	if _, perr := ingest.ParseParams(r.URL.Query(), now); perr != nil {
		return http.StatusBadRequest
	}
	return http.StatusUnprocessableEntity
}

// ingestStatus is the HTTP status of a refused /ingest request, as Pyroscope
// answers it: an invalid profile or label set is 422 for the formats
// Pyroscope converts to pprof before its distributor (pprof, jfr,
// speedscope) and 400 for the text formats, which it pushes like push.v1.
// Rate limits and unavailability keep their own status (429, 503): a
// client should retry them (Pyroscope answers 422).
func ingestStatus(code connect.Code, f ingest.Format) int {
	st := HTTPStatus(code)
	if st == http.StatusBadRequest && !isTextFormat(f) {
		return http.StatusUnprocessableEntity
	}
	return st
}

// addDecoded adds the profiles a format converter produced to the request's
// usage count, each with the request's labels over its own and its size
// marshalled; raws are the marshalled forms, for the write-ahead log (which
// replays pprof). A profile that does not marshal gets a nil raw: finish
// marshals it again and returns the error.
func (h *Handler) addDecoded(rec *usage.Request, reqLabels model.Labels, decoded []ingest.Decoded) ([]*usage.Item, [][]byte) {
	items, raws := make([]*usage.Item, len(decoded)), make([][]byte, len(decoded))
	for i, d := range decoded {
		labels := reqLabels.Clone()
		for _, l := range d.Labels {
			if !labels.Has(l.Name) {
				labels = labels.Set(l.Name, l.Value)
			}
		}
		items[i] = rec.Add(labels, 0)
		if raw, err := d.Profile.MarshalVT(); err == nil {
			raws[i], items[i].Size = raw, len(raw)
		}
	}
	return items, raws
}

// finishDecoded validates the profiles a format converter produced (their
// items and raws from addDecoded).
func (h *Handler) finishDecoded(lim *validation.Limits, items []*usage.Item, raws [][]byte, decoded []ingest.Decoded, fallback int64) ([]Profile, error) {
	out := make([]Profile, 0, len(decoded))
	for i, d := range decoded {
		p, err := h.finish(lim, items[i], d.Profile, nil, raws[i], "", fallback)
		if err != nil {
			if len(decoded) > 1 {
				err = fmt.Errorf("profile %d of %d: %w", i+1, len(decoded), err)
			}
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// HTTPStatus maps a connect code to the HTTP status plain-HTTP endpoints
// (/ingest, the internal replica API) answer with.
func HTTPStatus(c connect.Code) int {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeOutOfRange, connect.CodeFailedPrecondition:
		return http.StatusBadRequest
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeCanceled:
		return 499
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errReader fails every read with its error.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
