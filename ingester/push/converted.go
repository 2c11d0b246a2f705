package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// PushConverted is the front door for wire formats decoded outside this
// package (OTLP profiles): it resolves the tenant from hdr, then runs
// convert, validates every profile it gives and stores them all or none.
// A convert error is the client's (InvalidArgument) unless it is a
// *connect.Error or a *validation.Error. size is the request as received,
// for the ingestion rate limit. The error is a *connect.Error.
func (h *Handler) PushConverted(ctx context.Context, hdr http.Header, size int, convert func() ([]ingest.Decoded, error)) error {
	t, err := tenant.FromHeader(hdr, h.Multitenancy)
	if err != nil {
		return TenantError(err)
	}
	decoded, err := convert()
	if err != nil {
		var ce *connect.Error
		var ve *validation.Error
		if !errors.As(err, &ce) && !errors.As(err, &ve) {
			err = &validation.Error{Reason: validation.InvalidProfile, Msg: err.Error()}
		}
		return h.reject(t, 1, err)
	}
	lim := h.Limits.For(t)
	if err := convertedSizes(lim, decoded); err != nil {
		return h.reject(t, len(decoded), err)
	}
	profiles, err := h.finishDecoded(lim, nil, decoded, 0)
	if err != nil {
		return h.reject(t, len(decoded), err)
	}
	return h.store(ctx, t, lim, profiles, size)
}

// convertedSizes applies limits.max-profile-size-bytes to each converted
// profile: one request of another format may carry many.
func convertedSizes(lim *validation.Limits, decoded []ingest.Decoded) error {
	if lim.MaxProfileSizeBytes <= 0 {
		return nil
	}
	for i, d := range decoded {
		if n := d.Profile.SizeVT(); n > lim.MaxProfileSizeBytes {
			return &validation.Error{Reason: validation.ProfileTooLarge,
				Msg: fmt.Sprintf("converted profile %d of %d is %d bytes, more than the limit of %d (limits.max-profile-size-bytes)", i+1, len(decoded), n, lim.MaxProfileSizeBytes)}
		}
	}
	return nil
}
