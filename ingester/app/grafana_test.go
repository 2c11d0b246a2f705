package app

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	adhocv1 "github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1/adhocprofilesv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
)

func withTenant[T any](m *T, tenant string) *connect.Request[T] {
	r := connect.NewRequest(m)
	if tenant != "" {
		r.Header().Set("X-Scope-OrgID", tenant)
	}
	return r
}

// TestGrafanaCallsTenantsAndLimits: the calls beside querier.v1 go through
// the same tenant resolution and limits as the rest of the API.
func TestGrafanaCallsTenantsAndLimits(t *testing.T) {
	ing := startIngester(t, "-auth.multitenancy-enabled", "-limits.max-profile-size-bytes=2000")
	ctx := context.Background()
	st := settingsv1connect.NewSettingsServiceClient(http.DefaultClient, ing.URL)
	if _, err := st.Get(ctx, withTenant(&settingsv1.GetSettingsRequest{}, "")); connectCode(err) != connect.CodeUnauthenticated {
		t.Fatalf("settings without a tenant: %v", err)
	}
	if _, err := st.Set(ctx, withTenant(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "a", Value: "1"}}, "t1")); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, withTenant(&settingsv1.GetSettingsRequest{}, "t2"))
	if err != nil || len(got.Msg.Settings) != 0 {
		t.Fatalf("tenant t2 sees %v (%v)", got, err)
	}
	got, err = st.Get(ctx, withTenant(&settingsv1.GetSettingsRequest{}, "t1"))
	if err != nil || len(got.Msg.Settings) != 1 {
		t.Fatalf("tenant t1 sees %v (%v)", got, err)
	}
	if _, err := st.Set(ctx, withTenant(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "a", Value: strings.Repeat("x", 70000)}}, "t1")); connectCode(err) != connect.CodeInvalidArgument {
		t.Fatalf("a too large value: %v", err)
	}

	ah := adhocprofilesv1connect.NewAdHocProfileServiceClient(http.DefaultClient, ing.URL)
	big := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("a;b 1\n", 1000)))
	if _, err := ah.Upload(ctx, withTenant(&adhocv1.AdHocProfilesUploadRequest{Name: "x", Profile: big}, "t1")); connectCode(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "limits.max-profile-size-bytes") {
		t.Fatalf("an upload over the size limit: %v", err)
	}
	small := base64.StdEncoding.EncodeToString([]byte("main;work 3\nmain 1\n"))
	up, err := ah.Upload(ctx, withTenant(&adhocv1.AdHocProfilesUploadRequest{Name: "x.folded", Profile: small}, "t1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ah.Get(ctx, withTenant(&adhocv1.AdHocProfilesGetRequest{Id: up.Msg.Id}, "t2")); connectCode(err) != connect.CodeNotFound {
		t.Fatalf("tenant t2 reads t1's ad hoc profile: %v", err)
	}
	if _, err := ah.List(ctx, withTenant(&adhocv1.AdHocProfilesListRequest{}, "")); connectCode(err) != connect.CodeUnauthenticated {
		t.Fatalf("list without a tenant: %v", err)
	}

	for _, c := range []struct {
		name string
		err  error
	}{
		{"SelectMergeSpanProfile", func() error {
			//lint:ignore SA1019 the deprecated call is what clients still send
			_, err := ing.Querier.SelectMergeSpanProfile(ctx, withTenant(&querierv1.SelectMergeSpanProfileRequest{ProfileTypeID: "a:b:c:d:e", SpanSelector: []string{"00000000000000a1"}}, ""))
			return err
		}()},
		{"Diff", func() error {
			r := &querierv1.SelectMergeStacktracesRequest{ProfileTypeID: "a:b:c:d:e"}
			_, err := ing.Querier.Diff(ctx, withTenant(&querierv1.DiffRequest{Left: r, Right: r}, ""))
			return err
		}()},
		{"SelectHeatmap", func() error {
			_, err := ing.Querier.SelectHeatmap(ctx, withTenant(&querierv1.SelectHeatmapRequest{ProfileTypeID: "a:b:c:d:e", Step: 10}, ""))
			return err
		}()},
		{"AnalyzeQuery", func() error {
			_, err := ing.Querier.AnalyzeQuery(ctx, withTenant(&querierv1.AnalyzeQueryRequest{Query: "{}"}, ""))
			return err
		}()},
	} {
		if connectCode(c.err) != connect.CodeUnauthenticated {
			t.Errorf("%s without a tenant: %v", c.name, c.err)
		}
	}
	resp, err := http.Get(ing.URL + "/pyroscope/render?query=a:b:c:d:e")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("render without a tenant: %d", resp.StatusCode)
	}
}
