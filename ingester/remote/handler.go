package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/transport"
)

// Internal read endpoints, on every ingester's HTTP port. Both take a JSON
// Request; select answers EncodeSelections, series-labels EncodeLabels.
const (
	SelectPath       = "/internal/v1/select"
	SeriesLabelsPath = "/internal/v1/series-labels"

	selectionsType = "application/x-hearth-selections"
	labelsType     = "application/x-hearth-labels"
)

// DefaultMaxResponseBytes bounds one ingester's answer when the options leave it 0.
const DefaultMaxResponseBytes = 256 << 20

// Request is the body of both read endpoints.
type Request struct {
	Tenant      string `json:"tenant"`
	ProfileType string `json:"profile_type,omitempty"` // select only; "" all types
	Start       int64  `json:"start"`                  // ns, inclusive
	End         int64  `json:"end"`                    // ns, inclusive
	// Selectors restrict the series (a series matches when it matches one of
	// them); none: every series.
	Selectors []string `json:"selectors,omitempty"`
}

// HandlerOptions configure the serving side.
type HandlerOptions struct {
	// MaxResponseBytes bounds an encoded answer (0: DefaultMaxResponseBytes).
	MaxResponseBytes int64
	Logger           *slog.Logger
	// Run runs each read (selecting and encoding its answer) under the
	// ingester's limits: querier.Limiter.RunPeer (nil: as is). Its refusal
	// is the answer, a ResourceExhausted (429) the asking ingester counts as
	// a failed instance of its read set.
	Run func(ctx context.Context, fn func(context.Context) error) error
}

// NewSelectHandler serves SelectPath and SeriesLabelsPath from local (mount
// it on both paths).
func NewSelectHandler(local querier.Source, o HandlerOptions) http.Handler {
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &selectHandler{local: local, o: o}
}

type selectHandler struct {
	local querier.Source
	o     HandlerOptions
}

func (h *selectHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		transport.WriteError(w, connect.NewError(connect.CodeUnimplemented, errors.New("use POST")))
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("request: %w", err)))
		return
	}
	if err := tenant.Validate(req.Tenant); err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("request: %w", err)))
		return
	}
	match, err := querier.Matcher(req.Selectors...)
	if err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, err))
		return
	}
	if r.URL.Path != SelectPath && r.URL.Path != SeriesLabelsPath {
		transport.WriteError(w, connect.NewError(connect.CodeNotFound, fmt.Errorf("no internal endpoint %s", r.URL.Path)))
		return
	}
	var body []byte
	var ctype string
	run := h.o.Run
	if run == nil {
		run = func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }
	}
	// Selecting and encoding in the slot: the answer is built there.
	err = run(r.Context(), func(ctx context.Context) error {
		var err error
		if r.URL.Path == SelectPath {
			body, err = h.selectBody(ctx, req, match)
			ctype = selectionsType
			return err
		}
		ls, err := h.local.SeriesLabels(ctx, req.Tenant, match, req.Start, req.End)
		if err != nil {
			return asConnect(err)
		}
		body, ctype = EncodeLabels(ls), labelsType
		return nil
	})
	var ce *connect.Error
	if err != nil && !errors.As(err, &ce) {
		ce = asConnect(err)
	}
	if ce != nil {
		transport.WriteError(w, ce)
		return
	}
	if int64(len(body)) > h.o.MaxResponseBytes {
		transport.WriteError(w, tooLarge(h.o.MaxResponseBytes))
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(body)
}

func (h *selectHandler) selectBody(ctx context.Context, req Request, match func(model.Labels) bool) ([]byte, error) {
	// Packed rows stay packed: the encoder unpacks one series at a time.
	sels, err := h.local.Select(head.WithPackedRows(ctx), req.Tenant, req.ProfileType, match, req.Start, req.End)
	if err != nil {
		return nil, asConnect(err)
	}
	body, err := EncodeSelectionsLimit(sels, h.o.MaxResponseBytes)
	if errors.Is(err, ErrTooLarge) {
		return nil, tooLarge(h.o.MaxResponseBytes)
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return body, nil
}

func tooLarge(limit int64) *connect.Error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"the answer of this ingester is more than its limit of %.1f MiB (querier.max-remote-response-bytes): narrow the query's time range or label selector",
		float64(limit)/(1<<20)))
}

func asConnect(err error) *connect.Error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeCanceled, err)
	}
	code, _ := push.Classify(err)
	if code == connect.CodeInternal {
		code = connect.CodeUnavailable
	}
	return transport.AsConnect(code, err)
}
