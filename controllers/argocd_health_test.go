package controllers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// argoHealth runs docs/argocd-health.lua the way Argo CD does: the object as the global
// table obj, the script returning {status, message}.
func argoHealth(t *testing.T, script string, ing *hearthv1.Ingester) (status, message string) {
	t.Helper()
	b, err := json.Marshal(ing)
	if err != nil {
		t.Fatal(err)
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, m))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health script: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health script returned %s, want a table", L.Get(-1).Type())
	}
	return lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message"))
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(t)
	case float64:
		return lua.LNumber(t)
	case string:
		return lua.LString(t)
	case []any:
		tb := L.NewTable()
		for _, e := range t {
			tb.Append(toLua(L, e))
		}
		return tb
	case map[string]any:
		tb := L.NewTable()
		for k, e := range t {
			tb.RawSetString(k, toLua(L, e))
		}
		return tb
	}
	panic("unexpected JSON value")
}

func TestArgoCDHealth(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "argocd-health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)

	with := func(gen, observed int64, mod func(*hearthv1.Ingester), conds ...metav1.Condition) *hearthv1.Ingester {
		ing := newIngester("ns", "x")
		ing.Generation = gen
		ing.Status.ObservedGeneration = observed
		for _, c := range conds {
			meta.SetStatusCondition(&ing.Status.Conditions, c)
		}
		if mod != nil {
			mod(ing)
		}
		return ing
	}
	cond := func(typ string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg}
	}
	avail := cond(hearthv1.ConditionAvailable, metav1.ConditionTrue, ReasonAllReady, "3/3 ingesters ready")
	notAvail := cond(hearthv1.ConditionAvailable, metav1.ConditionFalse, ReasonNotReady, "1/3 ingesters ready")
	prog := cond(hearthv1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, "1/3 ingester pods run the current spec")
	done := cond(hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete, "3 ingesters run generation 2")
	ok := cond(hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "no problem found")
	bad := cond(hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretNotFound, `Secret "s3" ... does not exist`)

	cases := []struct {
		name        string
		ing         *hearthv1.Ingester
		wantStatus  string
		wantMessage string
	}{
		{"no status yet", with(1, 0, nil), "Progressing", "Waiting for the operator to report status"},
		{"stale generation", with(3, 2, nil, avail, done, ok), "Progressing", "Waiting for the operator to observe generation 3"},
		{"healthy", with(2, 2, nil, avail, done, ok), "Healthy", "AllReplicasReady: 3/3 ingesters ready"},
		{"rolling out", with(2, 2, nil, avail, prog, ok), "Progressing", "RollingOut: 1/3 ingester pods run the current spec"},
		{"degraded wins over progressing", with(2, 2, nil, notAvail, prog, bad), "Degraded", `SecretNotFound: Secret "s3" ... does not exist`},
		{"paused", with(2, 2, func(i *hearthv1.Ingester) { i.Spec.Paused = true }, avail,
			cond(hearthv1.ConditionProgressing, metav1.ConditionFalse, ReasonPaused, ""), ok), "Suspended", "spec.paused is true: the operator changes nothing"},
		{"scaled to zero", with(2, 2, func(i *hearthv1.Ingester) { i.Spec.Replicas = ptr.To[int32](0) },
			cond(hearthv1.ConditionAvailable, metav1.ConditionFalse, ReasonScaledToZero, "spec.replicas is 0"), done, ok), "Suspended", "ScaledToZero: spec.replicas is 0"},
		{"not available, not progressing", with(2, 2, nil, notAvail, done, ok), "Progressing", "ReplicasNotReady: 1/3 ingesters ready"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, msg := argoHealth(t, script, tc.ing)
			if st != tc.wantStatus || msg != tc.wantMessage {
				t.Fatalf("health = %q %q, want %q %q", st, msg, tc.wantStatus, tc.wantMessage)
			}
		})
	}
}
