package querier

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	adhocv1 "github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1/adhocprofilesv1connect"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// AdHoc implements adhocprofiles.v1: profiles uploaded to look at them, kept
// per tenant in the bucket under <tenant>/adhoc/<id>/ (meta.json and the
// profile as uploaded), shared by every ingester. Uploads accept pprof
// (gzip or not) and folded stacks ("a;b;c 12" lines); the size limit is the
// push limit, limits.max-profile-size-bytes.
type AdHoc struct {
	adhocprofilesv1connect.UnimplementedAdHocProfileServiceHandler
	Bucket         objstore.Bucket
	Multitenancy   bool
	MaxProfileSize int // decoded bytes; <= 0: no limit
}

const (
	adhocDir        = "adhoc"
	maxAdhocName    = 1024
	maxAdhocListing = 10000
)

type adhocMeta struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	UploadedAt int64  `json:"uploaded_at"` // ms
	// Version is the format's (formatver.AdhocProfile); absent means 1.
	Version int `json:"version,omitempty"`
}

// decodeAdhocMeta reads an ad hoc profile's meta.json, refusing a version
// this release does not read.
func decodeAdhocMeta(obj string, data []byte) (adhocMeta, error) {
	var m adhocMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return m, connect.NewError(connect.CodeDataLoss, fmt.Errorf("ad hoc profile %s: %w", obj, err))
	}
	if err := formatver.AdhocProfile.Check(obj, max(m.Version, 1)); err != nil {
		return m, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return m, nil
}

func (a *AdHoc) tenant(h interface{ Header() httpHeader }) (string, error) {
	return (&Service{Multitenancy: a.Multitenancy}).tenant(h)
}

// parseAdhoc decodes an uploaded profile: pprof, else folded stacks.
func parseAdhoc(raw []byte, maxSize int) (*googlev1.Profile, error) {
	p, perr := pprofdec.DecodePprof(raw, maxSize)
	if perr == nil && len(p.SampleType) > 0 {
		return p, nil
	}
	if pprofdec.IsGzip(raw) {
		if perr == nil {
			perr = errors.New("profile has no sample types")
		}
		return nil, fmt.Errorf("not a pprof profile: %w", perr)
	}
	kind, _ := ingest.SampleKindFor("", 0) // CPU samples
	p, ferr := ingest.ParseFolded(raw, kind, false, 0, 0)
	if ferr != nil {
		return nil, fmt.Errorf("neither pprof (%v) nor folded stacks (%v)", perr, ferr)
	}
	return p, nil
}

// adhocTypes lists a profile's sample types as "type" (or "type:unit" when a type repeats).
func adhocTypes(p *googlev1.Profile) []string {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	out := make([]string, len(p.SampleType))
	for i, st := range p.SampleType {
		out[i] = str(st.Type)
	}
	return out
}

// adhocResponse renders one sample type of a stored profile as a flamebearer.
func adhocResponse(m adhocMeta, p *googlev1.Profile, want *string, maxNodesReq *int64) (*adhocv1.AdHocProfilesGetResponse, error) {
	types := adhocTypes(p)
	idx := 0
	if want != nil && *want != "" {
		idx = -1
		for i, t := range types {
			if t == *want {
				idx = i
				break
			}
		}
		if idx < 0 {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile %s has no sample type %q (it has %s)", m.ID, *want, strings.Join(types, ", ")))
		}
	}
	maxNodes, err := maxNodesOf(maxNodesReq, DefaultMaxNodes)
	if err != nil {
		return nil, err
	}
	t, err := pprofTree(p, idx)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	fg := t.flameGraph(maxNodes)
	pt := pprofType(p, idx)
	fb, err := json.Marshal(&FlamebearerProfile{
		Version:     1,
		Flamebearer: Flamebearer{Names: fg.Names, Levels: levels(fg.Levels), NumTicks: fg.Total, MaxSelf: fg.MaxSelf},
		Metadata:    flamebearerMetadata(pt, "single"),
	})
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return &adhocv1.AdHocProfilesGetResponse{
		Id: m.ID, Name: m.Name, UploadedAt: m.UploadedAt, ProfileType: types[idx], ProfileTypes: types, FlamebearerProfile: string(fb),
	}, nil
}

func pprofType(p *googlev1.Profile, idx int) model.ProfileType {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	pt := model.ProfileType{SampleType: str(p.SampleType[idx].Type), SampleUnit: str(p.SampleType[idx].Unit)}
	if p.PeriodType != nil {
		pt.PeriodType, pt.PeriodUnit = str(p.PeriodType.Type), str(p.PeriodType.Unit)
	}
	return pt
}

// pprofTree builds the function-name tree of one sample type of a pprof,
// refusing dangling references.
func pprofTree(p *googlev1.Profile, idx int) (*nameTree, error) {
	str := func(i int64) (string, error) {
		if i < 0 || i >= int64(len(p.StringTable)) {
			return "", fmt.Errorf("string index %d out of range (%d strings)", i, len(p.StringTable))
		}
		return p.StringTable[i], nil
	}
	fns := make(map[uint64]string, len(p.Function))
	for _, f := range p.Function {
		n, err := str(f.Name)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", f.Id, err)
		}
		fns[f.Id] = n
	}
	locs := make(map[uint64][]string, len(p.Location)) // innermost first
	for _, l := range p.Location {
		var names []string
		for _, ln := range l.Line {
			n, ok := fns[ln.FunctionId]
			if !ok {
				return nil, fmt.Errorf("location %d refers to function %d, which the profile does not have", l.Id, ln.FunctionId)
			}
			names = append(names, n)
		}
		if len(names) == 0 {
			names = []string{fmt.Sprintf("0x%x", l.Address)}
		}
		locs[l.Id] = names
	}
	t := newNameTree()
	var fr []string
	for i, s := range p.Sample {
		if idx >= len(s.Value) {
			return nil, fmt.Errorf("sample %d has %d values, the profile has %d sample types", i, len(s.Value), len(p.SampleType))
		}
		fr = fr[:0]
		for j := len(s.LocationId) - 1; j >= 0; j-- {
			names, ok := locs[s.LocationId[j]]
			if !ok {
				return nil, fmt.Errorf("sample %d refers to location %d, which the profile does not have", i, s.LocationId[j])
			}
			for k := len(names) - 1; k >= 0; k-- {
				fr = append(fr, names[k])
			}
		}
		t.add(fr, s.Value[idx])
	}
	return t, nil
}

func (a *AdHoc) load(ctx context.Context, tenant, id string) (adhocMeta, *googlev1.Profile, error) {
	var m adhocMeta
	if _, err := uuid.Parse(id); err != nil {
		return m, nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("id %q: %w", id, err))
	}
	obj := path.Join(tenant, adhocDir, id, "meta.json")
	data, err := readObject(ctx, a.Bucket, obj, 64<<10)
	if err != nil {
		if a.Bucket.IsObjNotFoundErr(err) {
			return m, nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no ad hoc profile %s", id))
		}
		return m, nil, bucketError(err)
	}
	if m, err = decodeAdhocMeta(obj, data); err != nil {
		return m, nil, err
	}
	limit := int64(a.MaxProfileSize)
	if limit <= 0 {
		limit = 1 << 40
	}
	raw, err := readObject(ctx, a.Bucket, path.Join(tenant, adhocDir, id, "profile"), limit)
	if err != nil {
		return m, nil, bucketError(err)
	}
	p, err := parseAdhoc(raw, a.MaxProfileSize)
	if err != nil {
		return m, nil, connect.NewError(connect.CodeDataLoss, fmt.Errorf("ad hoc profile %s: %w", id, err))
	}
	return m, p, nil
}

// Upload stores a profile (base64) and answers its flame graph.
func (a *AdHoc) Upload(ctx context.Context, req *connect.Request[adhocv1.AdHocProfilesUploadRequest]) (*connect.Response[adhocv1.AdHocProfilesGetResponse], error) {
	t, err := a.tenant(req)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	if len(m.Name) > maxAdhocName {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("name of %d bytes, the limit is %d", len(m.Name), maxAdhocName))
	}
	if a.MaxProfileSize > 0 && base64.StdEncoding.DecodedLen(len(m.Profile)) > a.MaxProfileSize+3 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile of about %d bytes, the limit is %d (limits.max-profile-size-bytes)", base64.StdEncoding.DecodedLen(len(m.Profile)), a.MaxProfileSize))
	}
	raw, err := base64.StdEncoding.DecodeString(m.Profile)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("profile is not base64: %w", err))
	}
	p, err := parseAdhoc(raw, a.MaxProfileSize)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	meta := adhocMeta{ID: uuid.NewString(), Name: m.Name, UploadedAt: time.Now().UnixMilli(), Version: formatver.AdhocProfile.Writes}
	resp, err := adhocResponse(meta, p, nil, m.MaxNodes)
	if err != nil {
		return nil, err
	}
	mb, _ := json.Marshal(meta)
	dir := path.Join(t, adhocDir, meta.ID)
	// The profile first: a listed meta.json always has its profile.
	if err := a.Bucket.Upload(ctx, path.Join(dir, "profile"), bytes.NewReader(raw)); err != nil {
		return nil, bucketError(err)
	}
	if err := a.Bucket.Upload(ctx, path.Join(dir, "meta.json"), bytes.NewReader(mb)); err != nil {
		return nil, bucketError(err)
	}
	return connect.NewResponse(resp), nil
}

// Get answers a stored profile's flame graph.
func (a *AdHoc) Get(ctx context.Context, req *connect.Request[adhocv1.AdHocProfilesGetRequest]) (*connect.Response[adhocv1.AdHocProfilesGetResponse], error) {
	t, err := a.tenant(req)
	if err != nil {
		return nil, err
	}
	m, p, err := a.load(ctx, t, req.Msg.Id)
	if err != nil {
		return nil, err
	}
	resp, err := adhocResponse(m, p, req.Msg.ProfileType, req.Msg.MaxNodes)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// List lists the tenant's stored profiles, newest first.
func (a *AdHoc) List(ctx context.Context, req *connect.Request[adhocv1.AdHocProfilesListRequest]) (*connect.Response[adhocv1.AdHocProfilesListResponse], error) {
	t, err := a.tenant(req)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = a.Bucket.Iter(ctx, path.Join(t, adhocDir)+"/", func(name string) error {
		if strings.HasSuffix(name, "/") {
			ids = append(ids, path.Base(strings.TrimSuffix(name, "/")))
		}
		if len(ids) > maxAdhocListing {
			return fmt.Errorf("more than %d ad hoc profiles", maxAdhocListing)
		}
		return nil
	})
	if err != nil {
		return nil, bucketError(err)
	}
	resp := &adhocv1.AdHocProfilesListResponse{Profiles: []*adhocv1.AdHocProfilesProfileMetadata{}}
	for _, id := range ids {
		obj := path.Join(t, adhocDir, id, "meta.json")
		data, err := readObject(ctx, a.Bucket, obj, 64<<10)
		if err != nil {
			if a.Bucket.IsObjNotFoundErr(err) {
				continue // being uploaded
			}
			return nil, bucketError(err)
		}
		m, err := decodeAdhocMeta(obj, data)
		if connect.CodeOf(err) == connect.CodeFailedPrecondition {
			return nil, err // a newer release's: never listed as absent
		}
		if err != nil {
			continue
		}
		resp.Profiles = append(resp.Profiles, &adhocv1.AdHocProfilesProfileMetadata{Id: m.ID, Name: m.Name, UploadedAt: m.UploadedAt})
	}
	sort.Slice(resp.Profiles, func(i, j int) bool {
		if resp.Profiles[i].UploadedAt != resp.Profiles[j].UploadedAt {
			return resp.Profiles[i].UploadedAt > resp.Profiles[j].UploadedAt
		}
		return resp.Profiles[i].Id < resp.Profiles[j].Id
	})
	return connect.NewResponse(resp), nil
}

// Diff answers the diff flame graph of two stored profiles.
func (a *AdHoc) Diff(ctx context.Context, req *connect.Request[adhocv1.AdHocProfilesDiffRequest]) (*connect.Response[adhocv1.AdHocProfilesDiffResponse], error) {
	t, err := a.tenant(req)
	if err != nil {
		return nil, err
	}
	_, lp, err := a.load(ctx, t, req.Msg.LeftId)
	if err != nil {
		return nil, err
	}
	_, rp, err := a.load(ctx, t, req.Msg.RightId)
	if err != nil {
		return nil, err
	}
	lt, rt := adhocTypes(lp), adhocTypes(rp)
	want := ""
	if req.Msg.ProfileType != nil {
		want = *req.Msg.ProfileType
	}
	if want == "" && len(lt) > 0 {
		want = lt[0]
	}
	li, ri := slices.Index(lt, want), slices.Index(rt, want)
	if li < 0 || ri < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("sample type %q is not in both profiles (left: %s; right: %s)", want, strings.Join(lt, ", "), strings.Join(rt, ", ")))
	}
	maxNodes, err := maxNodesOf(req.Msg.MaxNodes, DefaultMaxNodes)
	if err != nil {
		return nil, err
	}
	left, err := pprofTree(lp, li)
	if err != nil {
		return nil, connect.NewError(connect.CodeDataLoss, err)
	}
	right, err := pprofTree(rp, ri)
	if err != nil {
		return nil, connect.NewError(connect.CodeDataLoss, err)
	}
	fg := mergeDiff(left, right).diffFlameGraph(maxNodes)
	fb, err := json.Marshal(&FlamebearerProfile{
		Version:     1,
		Flamebearer: Flamebearer{Names: fg.Names, Levels: levels(fg.Levels), NumTicks: fg.Total, MaxSelf: fg.MaxSelf},
		Metadata:    flamebearerMetadata(pprofType(lp, li), "double"),
		LeftTicks:   fg.LeftTicks,
		RightTicks:  fg.RightTicks,
	})
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	common := []string{}
	for _, ty := range lt {
		for _, r := range rt {
			if ty == r {
				common = append(common, ty)
				break
			}
		}
	}
	return connect.NewResponse(&adhocv1.AdHocProfilesDiffResponse{ProfileTypes: common, FlamebearerProfile: string(fb)}), nil
}
