package querier

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	adhocv1 "github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// TestSettingsVersions: a setting written without a version (v0.2.0 and
// older) reads as version 1; this release writes version 1; a setting of a
// newer release is refused by Get and Set, counted, and left in the bucket.
func TestSettingsVersions(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	s := &Settings{Bucket: bkt}
	if err := bkt.Upload(ctx, "anonymous/settings/old.json", strings.NewReader(`{"name":"old","value":"v1","modifiedAt":5}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "new", Value: "x"}})); err != nil {
		t.Fatal(err)
	}
	written, err := readObject(ctx, bkt, "anonymous/settings/new.json", 1<<20)
	if err != nil || !bytes.Contains(written, []byte(`"version":1`)) {
		t.Fatalf("written as %s (%v), want version 1", written, err)
	}
	got, err := s.Get(ctx, connect.NewRequest(&settingsv1.GetSettingsRequest{}))
	if err != nil || len(got.Msg.Settings) != 2 || got.Msg.Settings[1].Value != "v1" {
		t.Fatalf("Get = %v, %v", got, err)
	}

	future := []byte(`{"name":"future","value":"z","modifiedAt":5,"version":2}`)
	if err := bkt.Upload(ctx, "anonymous/settings/future.json", bytes.NewReader(future)); err != nil {
		t.Fatal(err)
	}
	before := formatver.Refused(formatver.Settings)
	if _, err := s.Get(ctx, connect.NewRequest(&settingsv1.GetSettingsRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "anonymous/settings/future.json") {
		t.Fatalf("Get with a newer setting: %v, want FailedPrecondition naming it", err)
	}
	if _, err := s.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "future", Value: "overwrite", ModifiedAt: 9}})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Set over a newer setting: %v, want FailedPrecondition", err)
	}
	if n := formatver.Refused(formatver.Settings) - before; n != 2 {
		t.Errorf("refusals counted %v, want 2", n)
	}
	if kept, err := readObject(ctx, bkt, "anonymous/settings/future.json", 1<<20); err != nil || !bytes.Equal(kept, future) {
		t.Fatalf("the newer setting is now %s (%v), want it untouched", kept, err)
	}
}

// TestAdhocVersions: an ad hoc profile's meta.json of a newer release is
// refused by Get and List (never listed as absent) and left in the bucket.
func TestAdhocVersions(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	a := &AdHoc{Bucket: bkt}
	up, err := a.Upload(ctx, connect.NewRequest(&adhocv1.AdHocProfilesUploadRequest{Name: "x.folded", Profile: "bWFpbjt3b3JrIDMK"})) // "main;work 3\n"
	if err != nil {
		t.Fatal(err)
	}
	meta, err := readObject(ctx, bkt, "anonymous/adhoc/"+up.Msg.Id+"/meta.json", 1<<20)
	if err != nil || !bytes.Contains(meta, []byte(`"version":1`)) {
		t.Fatalf("meta.json %s (%v), want version 1", meta, err)
	}
	if l, err := a.List(ctx, connect.NewRequest(&adhocv1.AdHocProfilesListRequest{})); err != nil || len(l.Msg.Profiles) != 1 {
		t.Fatalf("List = %v, %v", l, err)
	}
	future := bytes.Replace(meta, []byte(`"version":1`), []byte(`"version":2`), 1)
	obj := "anonymous/adhoc/" + up.Msg.Id + "/meta.json"
	if err := bkt.Upload(ctx, obj, bytes.NewReader(future)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, connect.NewRequest(&adhocv1.AdHocProfilesGetRequest{Id: up.Msg.Id})); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), obj) {
		t.Fatalf("Get of a newer profile: %v, want FailedPrecondition naming %s", err, obj)
	}
	if _, err := a.List(ctx, connect.NewRequest(&adhocv1.AdHocProfilesListRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("List with a newer profile: %v, want FailedPrecondition", err)
	}
	if kept, err := readObject(ctx, bkt, obj, 1<<20); err != nil || !bytes.Equal(kept, future) {
		t.Fatalf("meta.json is now %s (%v), want it untouched", kept, err)
	}
}
