package controllers

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixtures are Ingesters as the API server stores them (defaults applied).
func fixtures() map[string]*hearthv1.Ingester {
	base := func(name string) *hearthv1.Ingester {
		return &hearthv1.Ingester{
			TypeMeta:   metav1.TypeMeta{APIVersion: "hearth.dev/v1alpha1", Kind: "Ingester"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "profiling", UID: "00000000-0000-0000-0000-000000000001", Generation: 1},
			Spec: hearthv1.IngesterSpec{
				Replicas:                      ptr.To[int32](3),
				Image:                         "hearth:v0.1.0",
				ReplicationFactor:             3,
				TerminationGracePeriodSeconds: ptr.To[int64](300),
				Storage: hearthv1.StorageSpec{
					Size:        resource.MustParse("10Gi"),
					WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
					WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				},
				ObjectStorage: hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem},
			},
		}
	}
	minimal := base("minimal")

	s3 := base("s3")
	s3.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{
		Backend: hearthv1.BackendS3, Bucket: "profiles", Endpoint: "minio.storage:9000", Region: "eu-west-1", Insecure: true,
		CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "bucket-creds", AccessKeyIDKey: "access", SecretAccessKeyKey: "secret"},
	}
	s3.Spec.Storage.StorageClassName = ptr.To("fast")
	s3.Spec.Storage.WhenScaled = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	s3.Spec.ImagePullPolicy = corev1.PullAlways
	s3.Spec.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("6Gi")},
	}
	s3.Spec.Ring = hearthv1.RingSpec{NumTokens: ptr.To[int32](256), HeartbeatPeriod: "10s", HeartbeatTimeout: "2m", MinReadyDuration: "30s"}
	s3.Spec.WAL.Fsync = "interval"
	s3.Spec.Blocks = hearthv1.BlocksSpec{MaxBlockDuration: "30m", MaxHeadBytes: "512MiB", LocalRetention: "2h"}
	s3.Spec.Log = hearthv1.LogSpec{Level: "debug", Format: "json"}
	s3.Spec.MultitenancyEnabled = true
	s3.Spec.Retention = "720h"
	s3.Spec.TerminationGracePeriodSeconds = ptr.To[int64](600)
	s3.Spec.PodTemplate = hearthv1.PodTemplateOverride{
		Labels:            map[string]string{"team": "observability", LabelInstance: "must-not-win"},
		Annotations:       map[string]string{"prometheus.io/scrape": "true"},
		NodeSelector:      map[string]string{"pool": "ingest"},
		Tolerations:       []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ingest", Effect: corev1.TaintEffectNoSchedule}},
		PriorityClassName: "high",
		Env:               []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "5GiB"}},
	}

	zones := base("zoned")
	zones.Spec.Replicas = ptr.To[int32](7)
	zones.Spec.Zones = []hearthv1.ZoneSpec{
		{Name: "a", NodeSelector: map[string]string{"topology.kubernetes.io/zone": "eu-west-1a"}},
		{Name: "b", NodeSelector: map[string]string{"topology.kubernetes.io/zone": "eu-west-1b"}},
		{Name: "c", NodeSelector: map[string]string{"topology.kubernetes.io/zone": "eu-west-1c"}},
	}
	zones.Spec.PodTemplate.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelInstance: "zoned"}},
	}}
	gcs := base("gcs")
	gcs.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendGCS, Bucket: "profiles",
		CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "gcs-sa", ServiceAccountKeyKey: "sa.json"}}

	azure := base("azure")
	azure.Spec.ObjectStorage = hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendAzure, Bucket: "profiles", AccountName: "hearthprofiles",
		CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "azure-key"}}
	return map[string]*hearthv1.Ingester{"minimal": minimal, "s3": s3, "zones": zones, "gcs": gcs, "azure": azure}
}

func TestRenderGolden(t *testing.T) {
	for name, ing := range fixtures() {
		t.Run(name, func(t *testing.T) {
			got, err := RenderYAML(ing)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run 'go test ./controllers -run TestRenderGolden -update' to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered children differ from %s (rerun with -update if the change is intended):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  - %s\n  + %s\n", i+1, wl, gl)
			if shown++; shown == 10 {
				break
			}
		}
	}
	return b.String()
}

func TestRenderRules(t *testing.T) {
	f := fixtures()

	t.Run("zones split replicas evenly, earlier zones take the remainder", func(t *testing.T) {
		zs := Zones(f["zones"])
		got := []int32{zs[0].Replicas, zs[1].Replicas, zs[2].Replicas}
		if got[0] != 3 || got[1] != 2 || got[2] != 2 {
			t.Fatalf("replicas per zone = %v, want [3 2 2]", got)
		}
	})

	t.Run("no placement given: a soft spread across nodes; any given placement replaces it", func(t *testing.T) {
		spread := func(ing *hearthv1.Ingester) []corev1.TopologySpreadConstraint {
			cm, err := RenderConfigMap(ing)
			if err != nil {
				t.Fatal(err)
			}
			return RenderStatefulSet(ing, Zones(ing)[0], cm).Spec.Template.Spec.TopologySpreadConstraints
		}
		ing := f["minimal"].DeepCopy()
		got := spread(ing)
		if len(got) != 1 || got[0].TopologyKey != corev1.LabelHostname || got[0].WhenUnsatisfiable != corev1.ScheduleAnyway ||
			got[0].MaxSkew != 1 || got[0].LabelSelector.MatchLabels[LabelInstance] != ing.Name {
			t.Fatalf("default spread = %+v", got)
		}
		ing.Spec.PodTemplate.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
		if got := spread(ing); len(got) != 0 {
			t.Fatalf("with an affinity given, the default spread stays: %+v", got)
		}
		ing.Spec.PodTemplate.Affinity = nil
		own := corev1.TopologySpreadConstraint{MaxSkew: 2, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule}
		ing.Spec.PodTemplate.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{own}
		if got := spread(ing); len(got) != 1 || got[0].TopologyKey != corev1.LabelTopologyZone {
			t.Fatalf("the podTemplate's own spread = %+v", got)
		}
	})

	t.Run("config change changes the pod template checksum, image change does not touch config", func(t *testing.T) {
		ing := f["minimal"].DeepCopy()
		sum := func(ing *hearthv1.Ingester) string {
			cm, err := RenderConfigMap(ing)
			if err != nil {
				t.Fatal(err)
			}
			return RenderStatefulSet(ing, Zones(ing)[0], cm).Spec.Template.Annotations[AnnotationConfigChecksum]
		}
		before := sum(ing)
		ing.Spec.Image = "hearth:v0.2.0"
		if sum(ing) != before {
			t.Fatal("image change altered the config checksum")
		}
		ing.Spec.Blocks.MaxBlockDuration = "2h"
		if sum(ing) == before {
			t.Fatal("config change kept the config checksum: pods would not roll")
		}
	})

	t.Run("selector labels win over user pod labels", func(t *testing.T) {
		ing := f["s3"]
		cm, _ := RenderConfigMap(ing)
		sts := RenderStatefulSet(ing, Zones(ing)[0], cm)
		if got := sts.Spec.Template.Labels[LabelInstance]; got != "s3" {
			t.Fatalf("pod label %s = %q, want the Ingester name", LabelInstance, got)
		}
		if sts.Spec.Template.Labels["team"] != "observability" {
			t.Fatal("user pod label dropped")
		}
	})

	t.Run("config is valid YAML with the documented keys", func(t *testing.T) {
		c, err := IngesterConfig(f["zones"], "b")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(c, &m); err != nil {
			t.Fatal(err)
		}
		ring := m["ingester"].(map[string]any)["ring"].(map[string]any)
		if ring["instance_zone"] != "b" || ring["zone_awareness_enabled"] != true {
			t.Fatalf("zone missing from config: %v", ring)
		}
		if ring["tokens_file_path"] != "/data/tokens" {
			t.Fatalf("tokens file not on the volume: %v", ring["tokens_file_path"])
		}
	})

	t.Run("every child is owned by the Ingester", func(t *testing.T) {
		objs, err := Render(f["zones"])
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 6+3 {
			t.Fatalf("%d children, want 9 (SA, ConfigMap, 2 Services, PDB, NetworkPolicy, 3 StatefulSets)", len(objs))
		}
		for _, o := range objs {
			refs := o.GetOwnerReferences()
			if len(refs) != 1 || refs[0].Kind != "Ingester" || refs[0].Name != "zoned" || !*refs[0].Controller {
				t.Fatalf("%T %s owner references = %+v", o, o.GetName(), refs)
			}
		}
	})
}

func TestRingStatus(t *testing.T) {
	members, err := ParseRing(strings.NewReader(`{"shards":[{"id":"x-0","state":"ACTIVE"},{"id":"x-1","state":"ACTIVE"},{"id":"x-2","state":"LEAVING"},{"id":"x-3","state":"UNHEALTHY"}],"now":"2026-01-01T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	s := RingStatusOf(members, 3)
	if s.Active != 2 || s.Leaving != 1 || s.Unhealthy != 1 || s.Summary != "2/3 ACTIVE, 1 LEAVING, 1 UNHEALTHY" {
		t.Fatalf("ring status = %+v", s)
	}
	if _, err := ParseRing(strings.NewReader(`<html>`)); err == nil {
		t.Fatal("HTML ring page parsed as JSON")
	}
}

func TestPodProblem(t *testing.T) {
	pod := func(name, reason string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if reason != "" {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "ingester", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
		}
		return p
	}
	if p := podProblem([]corev1.Pod{pod("a", ""), pod("b", "ContainerCreating")}); p != nil {
		t.Fatalf("healthy pods reported: %+v", p)
	}
	p := podProblem([]corev1.Pod{pod("a", ""), pod("b", "ImagePullBackOff")})
	if p == nil || p.reason != ReasonPodsNotStarting || !strings.Contains(p.message, "b: ImagePullBackOff") {
		t.Fatalf("problem = %+v", p)
	}
	u := pod("c", "")
	u.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available"}}
	if p := podProblem([]corev1.Pod{u}); p == nil || p.reason != ReasonUnschedulable {
		t.Fatalf("unschedulable pod: %+v", p)
	}
}

func TestHTTPRingReader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ring" || r.Header.Get("Accept") != "application/json" {
			http.Error(w, "want GET /ring with Accept: application/json", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"shards":[{"id":"a-0","state":"ACTIVE","address":"10.0.0.1:4040"},{"id":"a-1","state":"JOINING"}],"now":"2026-01-01T00:00:00Z"}`)
	}))
	defer srv.Close()
	// The ring is read where the Target says (the pod's internal port in the operator).
	rr := HTTPRingReader{Target: func(_ context.Context, addr string) (string, *http.Client, error) {
		if addr != "10.0.0.9:4040" {
			t.Errorf("target asked for %q, want the pod's public address", addr)
		}
		return srv.URL, nil, nil
	}}
	members, err := rr.Ring(context.Background(), "10.0.0.9:4040")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members["a-0"] != "ACTIVE" || members["a-1"] != "JOINING" {
		t.Fatalf("members %v", members)
	}
	if s := RingStatusOf(members, 2); s.Summary != "1/2 ACTIVE, 1 JOINING" {
		t.Fatalf("summary %q", s.Summary)
	}
	srv.Close()
	if _, err := rr.Ring(context.Background(), "10.0.0.9:4040"); err == nil {
		t.Fatal("no error from a closed server")
	}
}

func TestGoMemLimit(t *testing.T) {
	limits := func(mem string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)}}
	}
	for _, tc := range []struct {
		name string
		res  corev1.ResourceRequirements
		env  []corev1.EnvVar
		want string
	}{
		{"no limit", corev1.ResourceRequirements{}, nil, ""},
		{"90% of 4Gi", limits("4Gi"), nil, "3686MiB"},
		{"decimal units", limits("1G"), nil, "858MiB"},
		{"the user's own wins", limits("4Gi"), []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "1GiB"}}, ""},
		{"too small to matter", limits("1Ki"), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := goMemLimit(tc.res, tc.env); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCredentialKeys(t *testing.T) {
	cs := &hearthv1.CredentialsSecretRef{Name: "c"}
	for _, tc := range []struct {
		o    hearthv1.ObjectStorageSpec
		want []string
	}{
		{hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, CredentialsSecret: cs}, []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}},
		{hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendGCS, CredentialsSecret: cs}, []string{"key.json"}},
		{hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendAzure, CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "c", AccountKeyKey: "k"}}, []string{"k"}},
		{hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendGCS}, nil}, // workload identity
		{hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem}, nil},
	} {
		if got := CredentialKeys(tc.o); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.o.Backend, got, tc.want)
		}
	}
}
