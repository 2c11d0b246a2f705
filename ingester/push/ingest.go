package push

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/tenant"
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
	maxBody := lim.MaxProfileSizeBytes
	if maxBody > 0 {
		maxBody += 1 << 20 // multipart framing and the sample type config
	}
	req, err := ingest.ParseRequest(r, ingest.Limits{MaxBodyBytes: maxBody, MaxDecompressedBytes: lim.MaxProfileSizeBytes}, h.Now())
	if err != nil {
		reason := string(validation.InvalidProfile)
		var uf *ingest.UnsupportedFormatError
		if errors.As(err, &uf) {
			reason = string(validation.UnsupportedFormat)
		}
		h.metrics.discarded.WithLabelValues(t, reason).Inc()
		http.Error(w, err.Error(), parseStatus(err, r, h.Now()))
		return
	}
	sent := make([]model.Label, 0, len(req.Labels))
	for _, l := range req.Labels {
		sent = append(sent, model.Label{Name: l.Name, Value: l.Value})
	}
	labels, err := normalize.IngestLabels(req.AppName, sent, req.SpyName)
	if err == nil && isTextFormat(req.Format) {
		labels = normalize.TextLabels(labels, req.AppName, model.Labels(sent).Has(model.LabelServiceName))
	}
	var fallback int64
	if !req.From.IsZero() {
		fallback = req.From.UnixNano()
	}
	var profiles []Profile
	switch {
	case err != nil:
		err = &validation.Error{Reason: validation.InvalidLabelName, Msg: err.Error()}
	case req.Profiles != nil:
		profiles, err = h.finishDecoded(lim, labels, req.Profiles, fallback)
	default:
		var p Profile
		var a *pprofdec.Arena
		p, a, err = h.finishIngestPprof(lim, labels, req)
		defer a.Release() // after the store: the profile dies with the request
		profiles = []Profile{p}
	}
	if err == nil {
		err = h.store(r.Context(), t, lim, profiles, int(r.ContentLength))
	} else {
		err = h.reject(t, max(len(req.Profiles), 1), err)
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

// finishIngestPprof decodes and completes a pprof profile sent to /ingest
// with what Pyroscope does there before its distributor: the time of older
// agents, the scripting spies' function names, the .NET agent's repairs,
// the profile name from the sample types.
// The profile is decoded into a pooled arena, which the caller releases once
// it is stored (also after an error).
func (h *Handler) finishIngestPprof(lim *validation.Limits, labels model.Labels, req *ingest.Request) (Profile, *pprofdec.Arena, error) {
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
	labels = labels.Clone().Set(model.LabelProfileName, strings.Clone(normalize.IngestProfileName(prof, display)))
	raw := req.Profile
	if changed {
		raw = nil
	}
	p, err := h.finish(lim, labels, prof, raw, "", 0)
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

// finishDecoded validates the profiles a format converter produced: each
// gets the request's labels over its own, and its marshalled form for the
// write-ahead log (which replays pprof).
func (h *Handler) finishDecoded(lim *validation.Limits, reqLabels model.Labels, decoded []ingest.Decoded, fallback int64) ([]Profile, error) {
	out := make([]Profile, 0, len(decoded))
	for i, d := range decoded {
		labels := reqLabels.Clone()
		for _, l := range d.Labels {
			if !labels.Has(l.Name) {
				labels = labels.Set(l.Name, l.Value)
			}
		}
		raw, err := d.Profile.MarshalVT()
		if err != nil {
			return nil, err
		}
		p, err := h.finish(lim, labels, d.Profile, raw, "", fallback)
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
