package distributor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/transport"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// AppendPath is the internal endpoint a replica receives writes on. Its body
// is one WAL record (record.Encode: tenant, then per profile its ID,
// time, final series labels and the raw bytes as received, usually gzip).
// The receiver appends locally and never distributes further.
const AppendPath = "/internal/v1/append"

// ContentType of an append body.
const ContentType = "application/x-hearth-record"

// DefaultMaxBodyBytes bounds an append body when HandlerOptions leave it 0.
const DefaultMaxBodyBytes = 256 << 20

// HandlerOptions configure the receiving side.
type HandlerOptions struct {
	MaxBodyBytes   int64 // 0: DefaultMaxBodyBytes
	MaxProfileSize int   // decompressed bytes per profile; 0: the tenant's limits.max-profile-size-bytes
	// Limits are applied again to every replicated profile (labels, samples,
	// stack depth, symbol lengths), as the push API applies them: a replica
	// trusts the routing, not the content. The time window is left to the
	// ingester that received the push: re-checking it against this clock
	// would split a quorum whenever the clocks disagree. nil: the zero
	// Limits (label syntax, duplicates and UTF-8, the profile's shape).
	// Asked per request: the tenant's effective limits (runtime overrides).
	Limits validation.TenantLimits
	Logger *slog.Logger
}

// NewInternalHandler serves AppendPath into local.
func NewInternalHandler(local push.Appender, o HandlerOptions) http.Handler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &receiver{local: local, o: o}
}

type receiver struct {
	local push.Appender
	o     HandlerOptions
}

// limits are the tenant's limits a replica applies: no time window, and the
// handler's profile size when it sets one.
func (h *receiver) limits(tn string) validation.Limits {
	var lim validation.Limits
	if h.o.Limits != nil {
		lim = *h.o.Limits.For(tn)
	}
	lim.RejectOlderThan, lim.CreationGracePeriod = 0, 0
	if h.o.MaxProfileSize > 0 {
		lim.MaxProfileSizeBytes = h.o.MaxProfileSize
	}
	return lim
}

func (h *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		transport.WriteError(w, connect.NewError(connect.CodeUnimplemented, errors.New("use POST")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			transport.WriteError(w, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("append body larger than %d bytes", h.o.MaxBodyBytes)))
			return
		}
		transport.WriteError(w, connect.NewError(connect.CodeUnavailable, fmt.Errorf("reading the append body: %w", err)))
		return
	}
	tn, entries, err := record.Decode(body)
	if err != nil {
		code := connect.CodeInvalidArgument
		if errors.Is(err, formatver.ErrUnsupported) {
			code = connect.CodeUnimplemented // a newer sender, not bad data: that replica fails
		}
		transport.WriteError(w, connect.NewError(code, fmt.Errorf("append body: %w", err)))
		return
	}
	if err := tenant.Validate(tn); err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("append body: %w", err)))
		return
	}
	lim := h.limits(tn)
	release, err := push.EnterDecode(r.Context())
	if err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeCanceled, err))
		return
	}
	defer release()
	ps := make([]push.Profile, len(entries))
	// The decoded profiles die with the request: their arenas go back to the
	// pool once the store's Append returned.
	var arenas []*pprofdec.Arena
	defer func() {
		for _, a := range arenas {
			a.Release()
		}
	}()
	for i, e := range entries {
		if err := checkLabels(&lim, e.Labels); err != nil {
			transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile %d: %w", i, err)))
			return
		}
		p, a, err := pprofdec.Decode(e.Raw, lim.MaxProfileSizeBytes)
		arenas = append(arenas, a)
		if err != nil {
			transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile %d: %w", i, err)))
			return
		}
		push.SanitizeStrings(p)
		if err := lim.Profile(p, e.TimeNanos, time.Time{}); err != nil {
			transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile %d: %w", i, err)))
			return
		}
		ps[i] = push.Profile{ID: e.ID, Labels: e.Labels, Profile: p, TimeNanos: e.TimeNanos, Raw: e.Raw}
	}
	if err := h.local.Append(r.Context(), tn, ps); err != nil {
		code, _ := push.Classify(err)
		if code == connect.CodeInternal || code == connect.CodeUnavailable {
			h.o.Logger.Warn("replicated append failed", "tenant", tn, "err", err)
		}
		transport.WriteError(w, transport.AsConnect(code, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkLabels validates a replicated series as the push API leaves it:
// sorted by name, with a service name and a profile name, within the limits.
func checkLabels(lim *validation.Limits, ls model.Labels) error {
	for i := 1; i < len(ls); i++ {
		if ls[i-1].Name > ls[i].Name {
			return fmt.Errorf("labels of series %s are not sorted", ls)
		}
	}
	if ls.Get(model.LabelServiceName) == "" || ls.Get(model.LabelProfileName) == "" {
		return fmt.Errorf("series %s has no %s or no %s", ls, model.LabelServiceName, model.LabelProfileName)
	}
	return lim.Labels(ls)
}

// PostAppend sends one encoded record to the instance at addr (host:port) over plain HTTP.
func PostAppend(ctx context.Context, c *http.Client, addr string, body []byte) error {
	return PostAppendURL(ctx, c, transport.BaseURL("http", addr), body)
}

// PostAppendURL sends one encoded record to the instance at base (scheme://host:port).
func PostAppendURL(ctx context.Context, c *http.Client, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+AppendPath, bytes.NewReader(body))
	if err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := c.Do(req)
	if err != nil {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil
	}
	return transport.ReadError(resp)
}
