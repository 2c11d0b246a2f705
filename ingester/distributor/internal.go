package distributor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/transport"
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
	MaxProfileSize int   // decompressed bytes per profile (limits.max-profile-size-bytes); 0: no limit
	Logger         *slog.Logger
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
	tenant, entries, err := record.Decode(body)
	if err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("append body: %w", err)))
		return
	}
	ps := make([]push.Profile, len(entries))
	for i, e := range entries {
		p, err := pprofdec.DecodePprof(e.Raw, h.o.MaxProfileSize)
		if err != nil {
			transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile %d: %w", i, err)))
			return
		}
		push.SanitizeStrings(p)
		ps[i] = push.Profile{ID: e.ID, Labels: e.Labels, Profile: p, TimeNanos: e.TimeNanos, Raw: e.Raw}
	}
	if err := h.local.Append(r.Context(), tenant, ps); err != nil {
		code, _ := push.Classify(err)
		if code == connect.CodeInternal || code == connect.CodeUnavailable {
			h.o.Logger.Warn("replicated append failed", "tenant", tenant, "err", err)
		}
		transport.WriteError(w, transport.AsConnect(code, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PostAppend sends one encoded record to the instance at addr (host:port).
func PostAppend(ctx context.Context, c *http.Client, addr string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+AppendPath, bytes.NewReader(body))
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
