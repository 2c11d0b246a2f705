package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// spec.overrides reaches the pods through a ConfigMap of its own, not the per-revision
// config ConfigMap: that one is named by its content and rolls the pods when it changes,
// while the overrides are reloaded by the running ingesters (-runtime-config.reload-period).
// The ConfigMap is mounted as a directory (no subPath), so that the kubelet replaces the
// file in place when the ConfigMap changes; the pod template never depends on its content.
const (
	OverridesVolume = "overrides"
	OverridesDir    = "/etc/hearth-overrides"
	OverridesFile   = "overrides.yaml"

	// ReasonInvalidOverrides is the Degraded reason of a spec.overrides the ingesters
	// would refuse; the last valid overrides stay in the ConfigMap.
	ReasonInvalidOverrides = "InvalidOverrides"
)

// overridesConfigMapName is the one ConfigMap holding an Ingester's runtime overrides
// (every zone reads it).
func overridesConfigMapName(ing *hearthv1.Ingester) string { return ing.Name + "-overrides" }

// InvalidOverridesError is a spec.overrides the ingesters would refuse.
type InvalidOverridesError struct{ Err error }

// Error is one line (YAML errors span several), for a condition message and an Event.
func (e *InvalidOverridesError) Error() string {
	return "spec.overrides: " + strings.Join(strings.Fields(e.Err.Error()), " ")
}
func (e *InvalidOverridesError) Unwrap() error { return e.Err }

// OverridesYAML renders spec.overrides as the ingester's runtime config file (YAML
// `overrides: {<tenant>: {<limit>: <value>}}`, tenants and keys sorted, values as
// written) and validates it with the ingester's own loader
// (validation.LoadRuntimeConfig: strict keys, per-tenant validation over the defaults)
// and tenant ids with the ingester's own check (tenant.Validate). An invalid spec is an
// *InvalidOverridesError naming the tenant and the key. Pure.
func OverridesYAML(ing *hearthv1.Ingester) ([]byte, error) {
	tenants := map[string]any{}
	for _, t := range validation.SortedTenants(ing.Spec.Overrides) {
		if err := tenant.Validate(t); err != nil {
			return nil, &InvalidOverridesError{fmt.Errorf("tenant %q: %w", t, err)}
		}
		raw := ing.Spec.Overrides[t].Raw
		if len(raw) == 0 {
			tenants[t] = map[string]any{}
			continue
		}
		// json.Number: an integer such as 16777216 must stay an integer (not 1.6777216e+07).
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var limits any
		if err := dec.Decode(&limits); err != nil {
			return nil, &InvalidOverridesError{fmt.Errorf("tenant %q: %w", t, err)}
		}
		if _, ok := limits.(map[string]any); !ok && limits != nil {
			return nil, &InvalidOverridesError{fmt.Errorf("tenant %q: want an object of limits, not %s", t, raw)}
		}
		tenants[t] = plainNumbers(limits)
	}
	body, err := yaml.Marshal(map[string]any{"overrides": tenants})
	if err != nil {
		return nil, fmt.Errorf("rendering spec.overrides: %w", err)
	}
	if _, err := validation.LoadRuntimeConfig(bytes.NewReader(body), IngesterDefaultLimits(ing)); err != nil {
		return nil, &InvalidOverridesError{err}
	}
	head := "# Rendered by hearth-operator from spec.overrides of Ingester " + ing.Namespace + "/" + ing.Name +
		". Do not edit: changes are overwritten.\n# The ingesters reload it every -runtime-config.reload-period; a key a tenant leaves out keeps the default.\n"
	return append([]byte(head), body...), nil
}

// plainNumbers turns the json.Numbers of v into int64 or float64, which YAML writes as
// numbers (it would quote a json.Number).
func plainNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = plainNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = plainNumbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	}
	return v
}

// IngesterDefaultLimits are the limits of a tenant without overrides in the ingesters the
// operator renders: the ingester's flag defaults (the rendered config sets no limits)
// with the retention of spec.retention. The overrides are validated over them, as the
// ingester does.
func IngesterDefaultLimits(ing *hearthv1.Ingester) validation.Limits {
	var l validation.Limits
	fs := flag.NewFlagSet("limits", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l.RegisterFlags(fs)
	if d, err := time.ParseDuration(string(ing.Spec.Retention)); err == nil {
		l.RetentionPeriod = d
	}
	return l
}

// RenderOverridesConfigMap is the ConfigMap of spec.overrides (OverridesYAML), or the
// error of an invalid spec.overrides. Mutable and of a fixed name: an edit changes the
// file the pods read, never the pod template.
func RenderOverridesConfigMap(ing *hearthv1.Ingester) (*corev1.ConfigMap, error) {
	body, err := OverridesYAML(ing)
	if err != nil {
		return nil, err
	}
	return overridesConfigMap(ing, body), nil
}

// emptyOverridesConfigMap holds no overrides: what the pods read when the first
// spec.overrides the operator sees is invalid (there is no last valid one to keep).
func emptyOverridesConfigMap(ing *hearthv1.Ingester) *corev1.ConfigMap {
	empty := ing.DeepCopy()
	empty.Spec.Overrides = nil
	body, err := OverridesYAML(empty)
	if err != nil {
		panic(err) // no tenants: nothing to refuse
	}
	return overridesConfigMap(ing, body)
}

func overridesConfigMap(ing *hearthv1.Ingester, body []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(ing, overridesConfigMapName(ing)),
		Data:       map[string]string{OverridesFile: string(body)},
	}
}

// overridesVolume mounts the overrides ConfigMap as a directory: the kubelet updates the
// files of a ConfigMap volume in place (an atomic symlink swap), but never a subPath mount.
func overridesVolume(ing *hearthv1.Ingester) (corev1.Volume, corev1.VolumeMount) {
	mode := int32(0o444)
	return corev1.Volume{
			Name: OverridesVolume,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: overridesConfigMapName(ing)},
				DefaultMode:          &mode,
			}},
		},
		corev1.VolumeMount{Name: OverridesVolume, MountPath: OverridesDir, ReadOnly: true}
}

// phaseOverrides applies the overrides ConfigMap, before the StatefulSets that mount it.
// An invalid spec.overrides is not applied: the ConfigMap keeps the last valid overrides
// (the ingesters would refuse the reload anyway, and a pod starting on a file it refuses
// would not start), and the report makes the Ingester Degraded (InvalidOverrides, with a
// Warning Event). With no ConfigMap yet, it is created without overrides, so the pods
// start.
func (r *IngesterReconciler) phaseOverrides(ctx context.Context, s *reconcileScope) (bool, error) {
	ing := s.ing
	if ing.Spec.Paused {
		return false, nil
	}
	cm, err := RenderOverridesConfigMap(ing)
	var invalid *InvalidOverridesError
	switch {
	case errors.As(err, &invalid):
		s.overrides = &problem{ReasonInvalidOverrides, fmt.Sprintf(
			"%v; not applied: the ingesters keep the last valid overrides (ConfigMap %s) until spec.overrides is fixed",
			invalid, overridesConfigMapName(ing))}
		live := &corev1.ConfigMap{}
		err := r.Get(ctx, client.ObjectKey{Namespace: ing.Namespace, Name: overridesConfigMapName(ing)}, live)
		if !apierrors.IsNotFound(err) {
			return false, client.IgnoreNotFound(err)
		}
		cm = emptyOverridesConfigMap(ing)
	case err != nil:
		return false, err
	}
	return false, r.apply(ctx, ing, cm)
}
