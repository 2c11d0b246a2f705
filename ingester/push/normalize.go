package push

import (
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// pyroscopeRewrites applies, on every push path, what Pyroscope's
// distributor does to a profile and its series labels before storing it
// (ingester/normalize): its profile checks, invalid UTF-8 refused, the
// __session_id__ label dropped, godeltaprof names, dots in label names, the
// Go repairs. labels must be sorted; the result is sorted. changed reports a
// profile rewrite (the raw bytes must then be marshalled again).
func (h *Handler) pyroscopeRewrites(labels model.Labels, p *googlev1.Profile) (_ model.Labels, changed bool, _ error) {
	invalid := func(r validation.Reason, err error) (model.Labels, bool, error) {
		return nil, false, &validation.Error{Reason: r, Msg: err.Error()}
	}
	if err := normalize.Check(p); err != nil {
		return invalid(validation.InvalidProfile, err)
	}
	if err := normalize.CheckUTF8(p); err != nil {
		if !h.Normalize.SanitizeInvalidUTF8 {
			return invalid(validation.InvalidProfile, err)
		}
		SanitizeStrings(p)
		changed = true
	}
	sent := labels.Delete(normalize.LabelSessionID)
	labels, _ = normalize.Godeltaprof(sent)
	labels, _, err := normalize.SanitizeLabels(labels)
	if err != nil {
		return invalid(validation.DuplicateLabel, err)
	}
	c, err := normalize.SanitizeSampleLabels(p, sent, labels)
	if err != nil {
		return invalid(validation.InvalidLabelName, err)
	}
	changed = changed || c
	if normalize.Language(labels.Get(normalize.LabelPyroscopeSpy), p) == "go" {
		changed = normalize.FixGo(p, h.Normalize) || changed
	}
	return labels, changed, nil
}

// withPrivateServiceName adds __service_name__, which Pyroscope's storage
// puts on every series (a copy of service_name); ls is sorted.
func withPrivateServiceName(ls model.Labels) model.Labels {
	if sn := ls.Get(model.LabelServiceName); sn != "" {
		ls = ls.Set(normalize.LabelServiceNamePrivate, sn).Sort()
	}
	return ls
}
