package querier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// Settings implements settings.v1.SettingsService: a tenant's settings (what
// Grafana's flame graph views save) are objects in the bucket, one per name
// under <tenant>/settings/, so every ingester sees the same ones and they
// survive restarts. A Set older (modifiedAt) than the stored value is refused.
type Settings struct {
	settingsv1connect.UnimplementedSettingsServiceHandler
	Bucket       objstore.Bucket
	Multitenancy bool
}

const (
	settingsDir       = "settings"
	maxSettingName    = 256
	maxSettingValue   = 64 << 10
	maxSettingsToList = 10000
)

func (s *Settings) tenant(h interface{ Header() httpHeader }) (string, error) {
	return (&Service{Multitenancy: s.Multitenancy}).tenant(h)
}

func settingObject(tenant, name string) string {
	return path.Join(tenant, settingsDir, url.PathEscape(name)+".json")
}

// readObject reads a small object, refusing more than limit bytes.
func readObject(ctx context.Context, b objstore.Bucket, name string, limit int64) ([]byte, error) {
	r, err := b.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("object %s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// storedSetting is a setting as kept in the bucket: the setting and its
// format's version (formatver.Settings; absent means 1).
type storedSetting struct {
	*settingsv1.Setting
	Version int `json:"version,omitempty"`
}

// decodeSetting reads a stored setting, refusing a version this release
// does not read (a newer release's object is neither read nor overwritten).
func decodeSetting(obj string, data []byte) (*settingsv1.Setting, error) {
	st := storedSetting{Setting: &settingsv1.Setting{}}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, connect.NewError(connect.CodeDataLoss, fmt.Errorf("setting %s: %w", obj, err))
	}
	if err := formatver.Settings.Check(obj, max(st.Version, 1)); err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return st.Setting, nil
}

func bucketError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("object storage: %w", err))
}

// Get lists the tenant's settings, by name.
func (s *Settings) Get(ctx context.Context, req *connect.Request[settingsv1.GetSettingsRequest]) (*connect.Response[settingsv1.GetSettingsResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	var names []string
	err = s.Bucket.Iter(ctx, path.Join(t, settingsDir)+"/", func(name string) error {
		if strings.HasSuffix(name, ".json") {
			names = append(names, name)
		}
		if len(names) > maxSettingsToList {
			return fmt.Errorf("more than %d settings", maxSettingsToList)
		}
		return nil
	})
	if err != nil {
		return nil, bucketError(err)
	}
	resp := &settingsv1.GetSettingsResponse{Settings: []*settingsv1.Setting{}}
	for _, n := range names {
		data, err := readObject(ctx, s.Bucket, n, 2*maxSettingValue)
		if err != nil {
			if s.Bucket.IsObjNotFoundErr(err) {
				continue // deleted meanwhile
			}
			return nil, bucketError(err)
		}
		st, err := decodeSetting(n, data)
		if err != nil {
			return nil, err
		}
		resp.Settings = append(resp.Settings, st)
	}
	sort.Slice(resp.Settings, func(i, j int) bool { return resp.Settings[i].Name < resp.Settings[j].Name })
	return connect.NewResponse(resp), nil
}

// Set stores one setting; modifiedAt 0 means now.
func (s *Settings) Set(ctx context.Context, req *connect.Request[settingsv1.SetSettingsRequest]) (*connect.Response[settingsv1.SetSettingsResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	st := req.Msg.Setting
	if st == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("setting is required"))
	}
	if err := validSettingName(st.Name); err != nil {
		return nil, err
	}
	if len(st.Value) > maxSettingValue {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("setting %q: value of %d bytes, the limit is %d", st.Name, len(st.Value), maxSettingValue))
	}
	out := &settingsv1.Setting{Name: st.Name, Value: st.Value, ModifiedAt: st.ModifiedAt}
	if out.ModifiedAt == 0 {
		out.ModifiedAt = time.Now().UnixMilli()
	}
	obj := settingObject(t, st.Name)
	if data, err := readObject(ctx, s.Bucket, obj, 2*maxSettingValue); err == nil {
		old, err := decodeSetting(obj, data)
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeFailedPrecondition {
			return nil, err
		}
		if err == nil && old.ModifiedAt > out.ModifiedAt {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("setting %q was modified at %d, after this update (%d)", st.Name, old.ModifiedAt, out.ModifiedAt))
		}
	} else if !s.Bucket.IsObjNotFoundErr(err) {
		return nil, bucketError(err)
	}
	data, err := json.Marshal(storedSetting{Setting: out, Version: formatver.Settings.Writes})
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	if err := s.Bucket.Upload(ctx, obj, bytes.NewReader(data)); err != nil {
		return nil, bucketError(err)
	}
	return connect.NewResponse(&settingsv1.SetSettingsResponse{Setting: out}), nil
}

// Delete removes one setting (absent: nothing to do).
func (s *Settings) Delete(ctx context.Context, req *connect.Request[settingsv1.DeleteSettingsRequest]) (*connect.Response[settingsv1.DeleteSettingsResponse], error) {
	t, err := s.tenant(req)
	if err != nil {
		return nil, err
	}
	if err := validSettingName(req.Msg.Name); err != nil {
		return nil, err
	}
	if err := s.Bucket.Delete(ctx, settingObject(t, req.Msg.Name)); err != nil && !s.Bucket.IsObjNotFoundErr(err) {
		return nil, bucketError(err)
	}
	return connect.NewResponse(&settingsv1.DeleteSettingsResponse{}), nil
}

func validSettingName(n string) error {
	if n == "" || len(n) > maxSettingName {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("setting name must have 1 to %d bytes, got %d", maxSettingName, len(n)))
	}
	return nil
}

// RecordingRules answers settings.v1.RecordingRulesService with Unimplemented
// (HTTP 501): Hearth does not evaluate recording rules, so it neither stores
// nor lists any. The Profiles Drilldown app shows the error on its recording
// rules page only.
type RecordingRules struct {
	settingsv1connect.UnimplementedRecordingRulesServiceHandler
}

var errNoRecordingRules = errors.New("recording rules are not supported: Hearth does not evaluate them, so it keeps none")

// GetRecordingRule implements settingsv1connect.RecordingRulesServiceHandler.
func (RecordingRules) GetRecordingRule(context.Context, *connect.Request[settingsv1.GetRecordingRuleRequest]) (*connect.Response[settingsv1.GetRecordingRuleResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errNoRecordingRules)
}

// ListRecordingRules implements settingsv1connect.RecordingRulesServiceHandler.
func (RecordingRules) ListRecordingRules(context.Context, *connect.Request[settingsv1.ListRecordingRulesRequest]) (*connect.Response[settingsv1.ListRecordingRulesResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errNoRecordingRules)
}

// UpsertRecordingRule implements settingsv1connect.RecordingRulesServiceHandler.
func (RecordingRules) UpsertRecordingRule(context.Context, *connect.Request[settingsv1.UpsertRecordingRuleRequest]) (*connect.Response[settingsv1.UpsertRecordingRuleResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errNoRecordingRules)
}

// DeleteRecordingRule implements settingsv1connect.RecordingRulesServiceHandler.
func (RecordingRules) DeleteRecordingRule(context.Context, *connect.Request[settingsv1.DeleteRecordingRuleRequest]) (*connect.Response[settingsv1.DeleteRecordingRuleResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errNoRecordingRules)
}
