package controllers

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// The orchestration decisions are pure functions of what the reconciler observed (pods,
// StatefulSets, the ring as one ingester reports it); the reconciler carries them out.

// Ring member states, as /ring reports them.
const (
	StateActive    = "ACTIVE"
	StateJoining   = "JOINING"
	StatePending   = "PENDING"
	StateLeaving   = "LEAVING"
	StateUnhealthy = "UNHEALTHY"
)

// StuckReasons are the container waiting reasons of a pod that will not start without a
// fix (a new image, a fixed spec or input): the one list behind both Degraded
// (PodsNotStarting) and the rollout, which replaces an outdated pod in one of them
// whatever the budget.
var StuckReasons = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerError":       true,
	"CreateContainerConfigError": true,
	"RunContainerError":          true,
}

// PodInfo is what the decisions need to know about one ingester pod.
type PodInfo struct {
	Name        string
	UID         types.UID
	StatefulSet string
	Zone        string // "" without zones
	Ordinal     int
	IP          string
	Ready       bool
	Running     bool
	Terminating bool
	Outdated    bool   // its controller-revision-hash is not its StatefulSet's updateRevision
	Stuck       string // a waiting reason from StuckReasons, or ""
	Missing     bool   // an ordinal the StatefulSet should have but no pod exists (yet)
}

// WithMissing adds a Missing placeholder for every ordinal below a StatefulSet's replicas
// that has no pod: a deleted pod not yet recreated is still in flight.
func WithMissing(pods []PodInfo, replicas map[string]int32, zoneOf map[string]string) []PodInfo {
	have := map[string]bool{}
	for _, p := range pods {
		have[p.Name] = true
	}
	out := append([]PodInfo{}, pods...)
	stss := make([]string, 0, len(replicas))
	for s := range replicas {
		stss = append(stss, s)
	}
	sort.Strings(stss)
	for _, s := range stss {
		for i := range int(replicas[s]) {
			name := fmt.Sprintf("%s-%d", s, i)
			if !have[name] {
				out = append(out, PodInfo{Name: name, StatefulSet: s, Zone: zoneOf[s], Ordinal: i, Missing: true})
			}
		}
	}
	return out
}

// StuckReason returns the waiting reason of a pod that will not start without a new
// spec (StuckReasons: image pull errors, crash loops, container creation errors), or "".
func StuckReason(p *corev1.Pod) string {
	w := stuckWaiting(p)
	if w == nil {
		return ""
	}
	return w.Reason
}

// stuckWaiting is the first init or app container state waiting for a StuckReasons reason.
func stuckWaiting(p *corev1.Pod) *corev1.ContainerStateWaiting {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && StuckReasons[w.Reason] {
			return w
		}
	}
	return nil
}

// ordinalOf is the ordinal of a StatefulSet's pod from its name, -1 when it is not one.
func ordinalOf(stsName, podName string) int {
	rest, ok := strings.CutPrefix(podName, stsName+"-")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// PodInfoOf describes a pod of the StatefulSet sts (nil when the StatefulSet is unknown:
// the pod is never outdated then).
func PodInfoOf(p *corev1.Pod, sts *appsv1.StatefulSet) PodInfo {
	pi := PodInfo{
		Name:        p.Name,
		UID:         p.UID,
		Zone:        p.Labels[LabelZone],
		Ordinal:     -1,
		IP:          p.Status.PodIP,
		Ready:       podReady(p),
		Running:     p.Status.Phase == corev1.PodRunning,
		Terminating: !p.DeletionTimestamp.IsZero(),
		Stuck:       StuckReason(p),
	}
	if sts != nil {
		pi.StatefulSet = sts.Name
		pi.Ordinal = ordinalOf(sts.Name, p.Name)
		rev := p.Labels[appsv1.ControllerRevisionHashLabelKey]
		pi.Outdated = sts.Status.UpdateRevision != "" && rev != "" && rev != sts.Status.UpdateRevision
	}
	return pi
}

// RolloutAction is what the rollout does next.
type RolloutAction string

const (
	// RolloutDone: no pod runs an outdated template.
	RolloutDone RolloutAction = "Done"
	// RolloutWait: pods are outdated, but the ring or a replacement is not ready yet.
	RolloutWait RolloutAction = "Wait"
	// RolloutDelete: delete Step.Delete (the StatefulSet controller recreates them).
	RolloutDelete RolloutAction = "Delete"
)

// RolloutStep is the rollout's next step.
type RolloutStep struct {
	Action RolloutAction
	// Delete are the pods to delete now.
	Delete []string
	// InFlight are the pods being replaced (deleted, or their replacement not yet ACTIVE
	// and Ready).
	InFlight []string
	// Outdated and Updated count the pods.
	Outdated, Updated int32
	// Message says why (for the Progressing condition and Events).
	Message string
}

// NextRollout decides the next step of a rolling update. ring is the members' states by
// instance id (pod name) from one ingester, nil when no ingester answered.
//
//   - Outdated pods that are stuck (crash loop, image pull error, container creation error)
//     are deleted at once, whatever the budget: they serve nothing, and a fixed spec must be
//     able to replace them.
//   - Otherwise a pod (a zone, with zones) is replaced only while everything else is
//     healthy: every other pod Ready and ACTIVE, no LEAVING, UNHEALTHY, JOINING or PENDING
//     ring member. Without zones that is one pod at a time, highest ordinal first; with
//     zones, every outdated pod of one zone at a time, in zone order, and the rollout waits
//     until the zone's replacements are ACTIVE and Ready before the next zone.
func NextRollout(pods []PodInfo, ring map[string]string, zoneOrder []string) RolloutStep {
	var step RolloutStep
	var outdated, stuck []PodInfo
	byName := map[string]PodInfo{}
	for _, p := range pods {
		byName[p.Name] = p
		if p.Terminating || p.Missing {
			continue
		}
		if p.Outdated {
			outdated = append(outdated, p)
			if p.Stuck != "" {
				stuck = append(stuck, p)
			}
		} else {
			step.Updated++
		}
	}
	step.Outdated = int32(len(outdated))
	if len(stuck) > 0 {
		step.Action = RolloutDelete
		var why []string
		for _, p := range stuck {
			step.Delete = append(step.Delete, p.Name)
			why = append(why, p.Name+" ("+p.Stuck+")")
		}
		sort.Strings(step.Delete)
		sort.Strings(why)
		step.InFlight = step.Delete
		step.Message = "replacing outdated pods that cannot start: " + strings.Join(why, ", ")
		return step
	}
	if len(outdated) == 0 {
		step.Action = RolloutDone
		step.Message = "every pod runs the current template"
		return step
	}

	// What is not settled: pods terminating, not ready or not ACTIVE, and ring members
	// in a transient or failed state; grouped by zone ("" without zones or when unknown).
	unsettled := map[string][]string{} // zone → names
	var reasons []string
	for _, p := range pods {
		why := ""
		switch {
		case p.Missing:
			why = "not created yet"
		case p.Terminating:
			why = "terminating"
		case !p.Ready:
			why = "not ready"
		case ring != nil && ring[p.Name] == "":
			why = "not in the ring yet"
		case ring != nil && ring[p.Name] != StateActive:
			why = ring[p.Name]
		}
		if why != "" {
			unsettled[p.Zone] = append(unsettled[p.Zone], p.Name)
			reasons = append(reasons, p.Name+" "+why)
		}
	}
	for id, st := range ring {
		if _, isPod := byName[id]; isPod || st == StateActive {
			continue
		}
		// A member without a pod: LEAVING or UNHEALTHY (ring hygiene forgets those).
		unsettled["?"] = append(unsettled["?"], id)
		reasons = append(reasons, "ring member "+id+" "+st)
	}
	sort.Strings(reasons)
	for z := range unsettled {
		sort.Strings(unsettled[z])
	}
	inFlight := func() []string {
		var out []string
		for _, names := range unsettled {
			out = append(out, names...)
		}
		sort.Strings(out)
		return out
	}
	if ring == nil {
		step.Action, step.InFlight = RolloutWait, inFlight()
		step.Message = fmt.Sprintf("%d pods outdated; waiting for the ring (no ingester answered GET /ring)", len(outdated))
		return step
	}

	zoned := len(zoneOrder) > 0
	if !zoned {
		if p, ok := StalledOutdated(pods, unsettled); ok {
			// A pod that runs an outdated template and never turned Ready (a bad spec,
			// then reverted) serves nothing: replacing it disrupts nothing, and waiting
			// for it would wait forever.
			step.Action, step.Delete, step.InFlight = RolloutDelete, []string{p.Name}, []string{p.Name}
			step.Message = fmt.Sprintf("replacing %s, outdated and not ready (%d pods outdated); every other pod is healthy", p.Name, len(outdated))
			return step
		}
		if len(unsettled) > 0 {
			step.Action, step.InFlight = RolloutWait, inFlight()
			step.Message = fmt.Sprintf("%d pods outdated; waiting for a healthy ring: %s", len(outdated), strings.Join(reasons, ", "))
			return step
		}
		sort.Slice(outdated, func(i, j int) bool {
			if outdated[i].Ordinal != outdated[j].Ordinal {
				return outdated[i].Ordinal > outdated[j].Ordinal
			}
			return outdated[i].Name < outdated[j].Name
		})
		p := outdated[0]
		step.Action, step.Delete, step.InFlight = RolloutDelete, []string{p.Name}, []string{p.Name}
		step.Message = fmt.Sprintf("replacing %s (%d pods outdated), the ring is healthy", p.Name, len(outdated))
		return step
	}

	// Zones: the zone to work on is the one with unsettled pods, if any (only one may be).
	outdatedIn := map[string][]string{}
	for _, p := range outdated {
		outdatedIn[p.Zone] = append(outdatedIn[p.Zone], p.Name)
	}
	zone := ""
	switch {
	case len(unsettled) > 1 || unsettled["?"] != nil:
		step.Action, step.InFlight = RolloutWait, inFlight()
		step.Message = fmt.Sprintf("%d pods outdated; waiting for a healthy ring outside one zone: %s", len(outdated), strings.Join(reasons, ", "))
		return step
	case len(unsettled) == 1:
		for z := range unsettled {
			zone = z
		}
		if len(outdatedIn[zone]) == 0 {
			step.Action, step.InFlight = RolloutWait, inFlight()
			step.Message = fmt.Sprintf("%d pods outdated; waiting for zone %s: %s", len(outdated), zone, strings.Join(reasons, ", "))
			return step
		}
	default:
		for _, z := range zoneOrder {
			if len(outdatedIn[z]) > 0 {
				zone = z
				break
			}
		}
		if zone == "" { // outdated pods outside the known zones
			for z := range outdatedIn {
				zone = z
			}
		}
	}
	names := outdatedIn[zone]
	sort.Strings(names)
	step.Action, step.Delete = RolloutDelete, names
	step.InFlight = append(append([]string{}, names...), unsettled[zone]...)
	sort.Strings(step.InFlight)
	step.InFlight = dedup(step.InFlight)
	step.Message = fmt.Sprintf("replacing zone %s: %s (%d pods outdated)", zone, strings.Join(names, ", "), len(outdated))
	return step
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// ScaleDownPlan is what a replica decrease of one StatefulSet does.
type ScaleDownPlan struct {
	// Prepare are the pods that will go (ordinals desired..live-1) and have a process to
	// prepare: prepare-shutdown must succeed on all of them before the shrink.
	Prepare []PodInfo
	// Skipped are pods that will go but never started (no pod IP): nothing to flush.
	Skipped []string
	// Cancel are pods that were prepared but are no longer to go (replicas went back up).
	Cancel []PodInfo
}

// PlanScaleDown decides, for one StatefulSet with live replicas that should have desired,
// which pods to prepare for a final stop and which earlier preparations to cancel.
// prepared are the pods status.scaleDown says were prepared.
func PlanScaleDown(stsName string, live, desired int32, pods []PodInfo, prepared []string) ScaleDownPlan {
	var plan ScaleDownPlan
	wasPrepared := map[string]bool{}
	for _, n := range prepared {
		wasPrepared[n] = true
	}
	for _, p := range pods {
		if p.StatefulSet != stsName || p.Ordinal < 0 {
			continue
		}
		goes := int32(p.Ordinal) >= desired && int32(p.Ordinal) < live && desired < live
		switch {
		case goes && p.IP == "": // ScaleDownWait let it through: it never ran
			plan.Skipped = append(plan.Skipped, p.Name)
		case goes && !p.Terminating:
			plan.Prepare = append(plan.Prepare, p)
		case int32(p.Ordinal) < desired && wasPrepared[p.Name] && !p.Terminating && p.IP != "":
			// Only a pod that stays is un-prepared: one at or above the desired
			// count that the shrunk StatefulSet has not yet deleted must keep its
			// marker, or its stop would not flush.
			plan.Cancel = append(plan.Cancel, p)
		}
	}
	sort.Slice(plan.Prepare, func(i, j int) bool { return plan.Prepare[i].Ordinal < plan.Prepare[j].Ordinal })
	sort.Slice(plan.Cancel, func(i, j int) bool { return plan.Cancel[i].Name < plan.Cancel[j].Name })
	sort.Strings(plan.Skipped)
	return plan
}

// ForgetMembers returns the ring members to forget: UNHEALTHY members whose pod no
// longer exists (removed by a scale-down, or lost with its node). pods are the names of
// the Ingester's existing pods.
func ForgetMembers(ring map[string]string, pods map[string]bool) []string {
	var out []string
	for id, st := range ring {
		if st == StateUnhealthy && !pods[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// ClaimInfo is one PVC of an ingester.
type ClaimInfo struct {
	Name              string
	Requested         resource.Quantity
	ExpansionAllowed  bool   // its StorageClass has allowVolumeExpansion
	StorageClass      string // "" when the claim has none
	StorageClassFound bool
}

// StoragePlan is what a storage growth does next.
type StoragePlan struct {
	// Resize are the claims whose request must be raised to the new size.
	Resize []string
	// Recreate: every claim asks for the new size; delete the StatefulSet with orphan
	// propagation so that it is recreated with the new claim template (pods keep running).
	Recreate bool
	// Blocked says why the growth cannot go on (a claim's class does not allow expansion).
	Blocked string
}

// PlanStorage decides how to grow the volumes of one StatefulSet whose claim template asks
// for template while the spec wants want.
func PlanStorage(want, template resource.Quantity, claims []ClaimInfo) StoragePlan {
	var plan StoragePlan
	if want.Cmp(template) <= 0 {
		return plan
	}
	var blocked []string
	for _, c := range claims {
		if c.Requested.Cmp(want) >= 0 {
			continue
		}
		switch {
		case c.StorageClass == "":
			blocked = append(blocked, fmt.Sprintf("%s has no storage class", c.Name))
		case !c.StorageClassFound:
			blocked = append(blocked, fmt.Sprintf("%s: StorageClass %q not found", c.Name, c.StorageClass))
		case !c.ExpansionAllowed:
			blocked = append(blocked, fmt.Sprintf("%s: StorageClass %q does not set allowVolumeExpansion", c.Name, c.StorageClass))
		default:
			plan.Resize = append(plan.Resize, c.Name)
		}
	}
	sort.Strings(plan.Resize)
	sort.Strings(blocked)
	if len(blocked) > 0 {
		plan.Blocked = "cannot grow the volumes to " + want.String() + ": " + strings.Join(blocked, "; ")
		return plan
	}
	plan.Recreate = len(plan.Resize) == 0
	return plan
}

// ClaimResize is one claim's progress after its request was raised: what it asks for,
// what the volume has (status.capacity), and what the storage provider says.
type ClaimResize struct {
	Name      string
	Requested resource.Quantity
	Capacity  resource.Quantity
	// Status is status.allocatedResourceStatuses[storage] (e.g. ControllerResizeInProgress,
	// NodeResizeInfeasible), "" when the provider has not set one.
	Status string
	// Errors are the messages of the claim's ControllerResizeError/NodeResizeError
	// conditions.
	Errors []string
}

// ResizeProgress says which claims asked for at least want still have a smaller volume
// (waiting, sorted), and why one cannot grow (failed, "" when none reports it). Claims
// that ask for less than want are not grown yet (PlanStorage decides those).
func ResizeProgress(want resource.Quantity, claims []ClaimResize) (waiting []string, failed string) {
	var fails []string
	for _, c := range claims {
		if c.Requested.Cmp(want) < 0 || c.Capacity.Cmp(want) >= 0 {
			continue
		}
		waiting = append(waiting, c.Name)
		switch {
		case strings.HasSuffix(c.Status, "Infeasible"):
			fails = append(fails, fmt.Sprintf("%s: %s", c.Name, c.Status))
		case len(c.Errors) > 0:
			fails = append(fails, fmt.Sprintf("%s: %s", c.Name, strings.Join(c.Errors, "; ")))
		}
	}
	sort.Strings(waiting)
	sort.Strings(fails)
	if len(fails) > 0 {
		failed = "volumes cannot grow to " + want.String() + ": " + strings.Join(fails, ", ")
	}
	return waiting, failed
}

// DeletionPlan is what deleting an Ingester does next.
type DeletionPlan struct {
	// Flush are the pods to flush (POST /ingester/flush?wait=true) before the finalizer goes.
	Flush []PodInfo
	// Skipped are pods with no process to flush (never started, stuck, terminating).
	Skipped []string
	// Wait says why the deletion waits without flushing ("" when it does not).
	Wait string
}

// PlanDeletion decides which pods must flush before the finalizer is removed. A paused
// Ingester is not flushed and its deletion waits until spec.paused is false (or its
// finalizer is removed by hand).
func PlanDeletion(paused bool, pods []PodInfo) DeletionPlan {
	var plan DeletionPlan
	if paused {
		plan.Wait = "spec.paused is true: the operator does not flush the ingesters, so the deletion waits; set spec.paused to false, or remove the finalizer " + Finalizer + " to delete without flushing"
		return plan
	}
	for _, p := range pods {
		if p.IP == "" || !p.Running || p.Terminating || p.Stuck != "" {
			plan.Skipped = append(plan.Skipped, p.Name)
			continue
		}
		plan.Flush = append(plan.Flush, p)
	}
	sort.Strings(plan.Skipped)
	return plan
}

// DeletionBackoff is how long a deletion whose flush failed waits before trying again:
// as long as it has been failing, between 2s and 2 minutes.
func DeletionBackoff(failingFor time.Duration) time.Duration {
	return min(max(failingFor, 2*time.Second), 2*time.Minute)
}

// Finalizer on every Ingester: its pods flush and upload before the children go.
const Finalizer = "hearth.dev/flush"

// MarkersToCancel returns the pods whose prepare-shutdown marker must be removed (DELETE
// /ingester/prepare-shutdown): every running pod below its StatefulSet's desired count
// that has not been cleared yet (cleared: by pod UID, so each incarnation is called once).
// A pod that left in a scale-down (5→3, or parked at 0) keeps its marker on its retained
// volume; when a scale-up brings it back, its next stop would otherwise be a final one
// (writes refused, full upload, tokens dropped). rollout-operator cancels the marker on
// every pod below the desired count for the same reason. desired is by StatefulSet name.
func MarkersToCancel(pods []PodInfo, desired map[string]int32, cleared map[types.UID]bool) []PodInfo {
	var out []PodInfo
	for _, p := range pods {
		want, ok := desired[p.StatefulSet]
		if !ok || p.Ordinal < 0 || int32(p.Ordinal) >= want || p.Missing || p.Terminating || !p.Running || p.IP == "" || cleared[p.UID] {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ScaleDownWait says why the shrink of StatefulSet stsName from live to desired replicas
// must wait ("" when it may go on) and whether that is Degraded (the operator cannot fix
// it). pods are every pod of the Ingester (all StatefulSets); bound are the names of the
// claims that are Bound (their volume may hold a WAL).
//
//   - No scale-down while any pod runs an outdated template: a scale-down during a rollout
//     would remove the very pod the rollout replaces (rollout-operator refuses a downscale
//     while any StatefulSet has non-updated replicas). It runs once the rollout is done.
//   - Every leaving pod (ordinals desired..live-1) must be prepared before the shrink, so
//     one that cannot be called now makes it wait: terminating (its replacement is
//     prepared), stuck (Degraded: it must be fixed to flush), not started or not created
//     while its claim is Bound (its volume may hold unflushed data). A leaving pod whose
//     claim never bound never ran: nothing to flush.
//
// notUpdated are the StatefulSets whose status counts fewer updated replicas than
// replicas (rollout-operator's own test; it also holds while the pods' view lags).
func ScaleDownWait(stsName string, live, desired int32, pods []PodInfo, bound map[string]bool, notUpdated []string) (wait string, degraded bool) {
	if desired >= live {
		return "", false
	}
	var outdated []string
	have := map[int]PodInfo{}
	for _, p := range pods {
		if p.Outdated && !p.Terminating && !p.Missing {
			outdated = append(outdated, p.Name)
		}
		if p.StatefulSet == stsName && p.Ordinal >= 0 && !p.Missing {
			have[p.Ordinal] = p
		}
	}
	if len(outdated) > 0 {
		sort.Strings(outdated)
		return fmt.Sprintf("a rollout is in progress (%s on an outdated template); the scale-down runs once it is done", strings.Join(outdated, ", ")), false
	}
	if len(notUpdated) > 0 {
		sorted := append([]string{}, notUpdated...)
		sort.Strings(sorted)
		return fmt.Sprintf("a rollout is in progress (StatefulSet %s has non-updated replicas); the scale-down runs once it is done", strings.Join(sorted, ", ")), false
	}
	var waits, stuck []string
	for o := desired; o < live; o++ {
		name := fmt.Sprintf("%s-%d", stsName, o)
		claim := DataVolume + "-" + name
		p, ok := have[int(o)]
		switch {
		case !ok && bound[claim]:
			waits = append(waits, name+" not created yet (its volume may hold unflushed data)")
		case !ok:
		case p.Stuck != "":
			stuck = append(stuck, fmt.Sprintf("%s cannot start (%s)", name, p.Stuck))
		case p.Terminating:
			waits = append(waits, name+" terminating (its replacement is prepared once it runs)")
		case p.IP == "" && !bound[claim]:
			// Never ran: nothing to flush (PlanScaleDown skips it).
		case p.IP == "" || !p.Running:
			waits = append(waits, name+" not running (its volume may hold unflushed data)")
		}
	}
	if len(stuck) > 0 {
		return "leaving pods cannot be prepared to flush: " + strings.Join(append(stuck, waits...), ", ") +
			"; fix them (spec.image, their inputs) so that they can flush before they go", true
	}
	if len(waits) > 0 {
		return "leaving pods cannot be prepared to flush yet: " + strings.Join(waits, ", "), false
	}
	return "", false
}

// OrphanReplicas is the size a missing StatefulSet had, as its pods still running show it
// (the highest ordinal + 1; 0 without pods): the StatefulSet is recreated at that size and
// shrunk through the scale-down protocol, never created smaller (its controller would
// delete the high ordinals without their prepare-shutdown).
func OrphanReplicas(stsName string, pods []PodInfo) int32 {
	var n int32
	for _, p := range pods {
		if p.StatefulSet == stsName && !p.Missing && p.Ordinal >= 0 && int32(p.Ordinal)+1 > n {
			n = int32(p.Ordinal) + 1
		}
	}
	return n
}

// StalledOutdated finds, when the only unsettled pods are outdated pods that run but are
// not Ready (nothing terminating, missing or unhealthy elsewhere, no ring member without a
// pod), the highest-ordinal one: the rollout replaces it rather than wait for it.
// unsettled are the unsettled pod names by zone ("?": ring members without a pod).
func StalledOutdated(pods []PodInfo, unsettled map[string][]string) (PodInfo, bool) {
	n := 0
	for _, names := range unsettled {
		n += len(names)
	}
	if n == 0 || unsettled["?"] != nil {
		return PodInfo{}, false
	}
	var stalled []PodInfo
	for _, p := range pods {
		if p.Outdated && !p.Ready && !p.Terminating && !p.Missing {
			stalled = append(stalled, p)
		}
	}
	if len(stalled) != n {
		return PodInfo{}, false
	}
	sort.Slice(stalled, func(i, j int) bool { return stalled[i].Ordinal > stalled[j].Ordinal })
	return stalled[0], true
}

// StaleConfigMaps are the Ingester's per-revision ConfigMaps that no pod and no
// StatefulSet template uses any more (referenced), in name order: they are deleted. The
// current one is always referenced by the StatefulSets' templates once applied.
func StaleConfigMaps(names []string, referenced map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !referenced[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// configMapsUsed are the ConfigMaps the pods and the StatefulSets' templates mount.
func configMapsUsed(pods []corev1.Pod, stss map[string]*appsv1.StatefulSet) map[string]bool {
	used := map[string]bool{}
	add := func(vs []corev1.Volume) {
		for _, v := range vs {
			if v.ConfigMap != nil {
				used[v.ConfigMap.Name] = true
			}
		}
	}
	for i := range pods {
		add(pods[i].Spec.Volumes)
	}
	for _, sts := range stss {
		add(sts.Spec.Template.Spec.Volumes)
	}
	return used
}

// DefaultDeletionFlushTimeout bounds the flushes of a FlushWithTimeout deletion.
const DefaultDeletionFlushTimeout = 10 * time.Minute

// DeletionGivesUp says whether a deletion stops waiting for the flushes and removes the
// finalizer anyway: only under FlushWithTimeout, once timeout (default
// DefaultDeletionFlushTimeout) has passed since the deletion (whether paused or not:
// the Ingester is gone at most that long after it was deleted).
func DeletionGivesUp(policy hearthv1.DeletionPolicy, timeout hearthv1.Duration, sinceDeletion time.Duration) bool {
	if policy != hearthv1.DeletionFlushWithTimeout {
		return false
	}
	d := DefaultDeletionFlushTimeout
	if timeout != "" {
		if parsed, err := time.ParseDuration(string(timeout)); err == nil {
			d = parsed
		}
	}
	return sinceDeletion >= d
}

// ClaimOf says whether a volume claim with these labels belongs to the Ingester ingName
// (hearth.dev/instance, or app.kubernetes.io/instance on claims made by StatefulSets
// created before the claim label changed) and whether it must be relabelled: a claim has
// no owner, and Argo CD's label tracking would take one carrying app.kubernetes.io/instance
// for part of an Application of that name (and prune it).
func ClaimOf(ingName string, l map[string]string) (mine, relabel bool) {
	if l[LabelName] != appName || l[LabelComponent] != component {
		return false, false
	}
	relabel = l[LabelInstance] == ingName
	return relabel || l[LabelClaimInstance] == ingName, relabel
}

// ReattachedClaim says whether a claim must grow to want outside a storage growth: it is
// in use (its ordinal is below its StatefulSet's replicas) and asks for less, as a claim
// retained by a scale-down before a growth and reattached by a later scale-up does (the
// growth only expanded the claims in use then).
func ReattachedClaim(want, requested resource.Quantity, inUse bool) bool {
	return inUse && requested.Cmp(want) < 0
}
