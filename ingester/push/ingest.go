package push

import (
	"errors"
	"net/http"

	"connectrpc.com/connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
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
		http.Error(w, err.Error(), ingest.StatusCode(err))
		return
	}
	labels := make(model.Labels, 0, len(req.Labels)+2)
	for _, l := range req.Labels {
		labels = labels.Set(l.Name, l.Value)
	}
	if !labels.Has(model.LabelServiceName) && req.AppName != "" {
		labels = labels.Set(model.LabelServiceName, req.AppName)
	}
	var fallback int64
	if !req.From.IsZero() {
		fallback = req.From.UnixNano()
	}
	var p Profile
	if req.Folded != nil {
		if req.ProfileName != "" && !labels.Has(model.LabelProfileName) {
			labels = labels.Set(model.LabelProfileName, req.ProfileName)
		}
		raw, merr := req.Folded.MarshalVT()
		if merr != nil {
			http.Error(w, merr.Error(), http.StatusInternalServerError)
			return
		}
		p, err = h.finish(lim, labels, req.Folded, raw, "", fallback)
	} else {
		var prof *googlev1.Profile
		prof, err = pprofdec.DecodePprof(req.Profile, lim.MaxProfileSizeBytes)
		if err != nil {
			err = &validation.Error{Reason: validation.InvalidProfile, Msg: "cannot decode the pprof profile: " + err.Error()}
		} else {
			applySampleTypeConfig(prof, req.SampleTypeConfig)
			p, err = h.finish(lim, labels, prof, nil, "", fallback)
			if err == nil && len(req.SampleTypeConfig) > 0 {
				// The WAL must replay what was stored, renames included.
				p.Raw, err = prof.MarshalVT()
			} else if err == nil {
				p.Raw = req.Profile
			}
		}
	}
	if err == nil {
		err = h.store(r.Context(), t, lim, []Profile{p}, int(r.ContentLength))
	} else {
		err = h.reject(t, 1, err)
	}
	if err != nil {
		var ce *connect.Error
		code := connect.CodeInternal
		if errors.As(err, &ce) {
			code = ce.Code()
		}
		http.Error(w, err.Error(), HTTPStatus(code))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// applySampleTypeConfig renames sample types as the Go SDK asks (display-name),
// e.g. contentions → mutex_count, so profile type ids match Pyroscope's.
func applySampleTypeConfig(p *googlev1.Profile, cfg map[string]ingest.SampleTypeConfig) {
	if len(cfg) == 0 {
		return
	}
	for _, st := range p.SampleType {
		if st.Type <= 0 || st.Type >= int64(len(p.StringTable)) {
			continue
		}
		c, ok := cfg[p.StringTable[st.Type]]
		if !ok {
			continue
		}
		if c.DisplayName != "" {
			st.Type = int64(len(p.StringTable))
			p.StringTable = append(p.StringTable, c.DisplayName)
		}
		if c.Units != "" {
			st.Unit = int64(len(p.StringTable))
			p.StringTable = append(p.StringTable, c.Units)
		}
	}
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
