package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/usage"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// PushConverted is the front door for wire formats decoded outside this
// package (OTLP profiles): it resolves the tenant from hdr, then runs
// convert, validates every profile it gives and stores them all or none.
// A convert error is the client's (InvalidArgument) unless it is a
// *connect.Error or a *validation.Error. size is the request as received,
// for the ingestion rate limit and the usage counts, under the type label
// format. The error is a *connect.Error.
func (h *Handler) PushConverted(ctx context.Context, hdr http.Header, format string, size int, convert func() ([]ingest.Decoded, error)) error {
	t, err := tenant.FromHeader(hdr, h.Multitenancy)
	if err != nil {
		return TenantError(err)
	}
	lim := h.Limits.For(t)
	rec := h.Usage.Begin(t, lim.DistributorUsageGroups)
	rec.SetFormat(format)
	rec.Received(size)
	release, err := EnterDecode(ctx)
	if err != nil {
		return h.reject(rec, err)
	}
	defer release()
	decoded, err := convert()
	if err != nil {
		var ce *connect.Error
		var ve *validation.Error
		if !errors.As(err, &ce) && !errors.As(err, &ve) {
			err = &validation.Error{Reason: validation.InvalidProfile, Msg: err.Error()}
		}
		return h.reject(rec, err)
	}
	items, raws := h.addDecoded(rec, nil, decoded)
	if err := convertedSizes(lim, items); err != nil {
		return h.reject(rec, err)
	}
	profiles, err := h.finishDecoded(lim, items, raws, decoded, 0)
	if err != nil {
		return h.reject(rec, err)
	}
	return h.store(ctx, rec, lim, profiles, size)
}

// Refused counts a request refused before its profiles were read (OTLP/HTTP:
// its content type, a body too large, unreadable or not decoding), of size
// bytes as received, under the type label format, when its tenant resolves.
func (h *Handler) Refused(hdr http.Header, format string, size int, reason validation.Reason) {
	t, err := tenant.FromHeader(hdr, h.Multitenancy)
	if err != nil {
		return
	}
	rec := h.Usage.Begin(t, h.Limits.For(t).DistributorUsageGroups)
	rec.SetFormat(format)
	rec.Received(size)
	rec.End(string(reason), h.Now())
}

// convertedSizes applies limits.max-profile-size-bytes to each converted
// profile (its marshalled size): one request of another format may carry
// many.
func convertedSizes(lim *validation.Limits, items []*usage.Item) error {
	if lim.MaxProfileSizeBytes <= 0 {
		return nil
	}
	for i, it := range items {
		if n := it.Size; n > lim.MaxProfileSizeBytes {
			return &validation.Error{Reason: validation.ProfileTooLarge,
				Msg: fmt.Sprintf("converted profile %d of %d is %d bytes, more than the limit of %d (limits.max-profile-size-bytes)", i+1, len(items), n, lim.MaxProfileSizeBytes)}
		}
	}
	return nil
}
