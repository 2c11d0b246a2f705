package querier

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1/adhocprofilesv1connect"
	capabilitiesv1 "github.com/grafana/pyroscope/api/gen/proto/go/capabilities/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/capabilities/v1/capabilitiesv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
	"github.com/thanos-io/objstore"
)

// Deps is what the read API beside querier.v1 needs.
type Deps struct {
	Service        *Service        // tenant checks and sources
	Bucket         objstore.Bucket // settings and ad hoc profiles, shared by every ingester
	MaxProfileSize int             // ad hoc uploads: limits.max-profile-size-bytes
	Options        []connect.HandlerOption
}

// RegisterHTTP registers what Grafana's Pyroscope data source and the
// Profiles Drilldown app call beside querier.v1: settings.v1 (settings, and
// recording rules answered Unimplemented), adhocprofiles.v1,
// capabilities.v1 (no feature flags), /pyroscope/render and render-diff.
// handle is a mux's Handle, or one that wraps each handler (e.g. refusing
// calls until the ingester has started).
func RegisterHTTP(handle func(path string, h http.Handler), d Deps) {
	mt := d.Service.Multitenancy
	path, h := settingsv1connect.NewSettingsServiceHandler(&Settings{Bucket: d.Bucket, Multitenancy: mt}, d.Options...)
	handle(path, h)
	path, h = settingsv1connect.NewRecordingRulesServiceHandler(RecordingRules{}, d.Options...)
	handle(path, h)
	path, h = adhocprofilesv1connect.NewAdHocProfileServiceHandler(&AdHoc{Bucket: d.Bucket, Multitenancy: mt, MaxProfileSize: d.MaxProfileSize}, d.Options...)
	handle(path, h)
	path, h = capabilitiesv1connect.NewFeatureFlagsServiceHandler(featureFlags{}, d.Options...)
	handle(path, h)
	handle(RenderPath, http.HandlerFunc(d.Service.Render))
	handle(RenderDiffPath, http.HandlerFunc(d.Service.RenderDiff))
}

// featureFlags answers capabilities.v1: Hearth has no optional features to announce.
type featureFlags struct {
	capabilitiesv1connect.UnimplementedFeatureFlagsServiceHandler
}

func (featureFlags) GetFeatureFlags(context.Context, *connect.Request[capabilitiesv1.GetFeatureFlagsRequest]) (*connect.Response[capabilitiesv1.GetFeatureFlagsResponse], error) {
	return connect.NewResponse(&capabilitiesv1.GetFeatureFlagsResponse{FeatureFlags: []*capabilitiesv1.FeatureFlag{}}), nil
}
