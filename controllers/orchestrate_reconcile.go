package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// Reasons of the orchestration.
const (
	ReasonScalingDown       = "ScalingDown"
	ReasonScaleDownBlocked  = "PrepareShutdownFailed"
	ReasonScaleDownWaits    = "ScaleDownBlocked"
	ReasonResizingStorage   = "ResizingStorage"
	ReasonNotExpandable     = "StorageNotExpandable"
	ReasonDeleting          = "FlushingBeforeDelete"
	ReasonDeletionPaused    = "DeletionPaused"
	ReasonFlushFailed       = "FlushFailed"
	ReasonReplacing         = "ReplacingPod"
	ReasonForgotMember      = "ForgotRingMember"
	ReasonRecreatingSts     = "RecreatingStatefulSet"
	ReasonVolumesResizing   = "VolumesResizing"
	ReasonResizeFailed      = "VolumeResizeFailed"
	ReasonCancelledShutdown = "CancelledPrepareShutdown"
	ReasonDeletedUnflushed  = "DeletedWithoutFlush"
)

// orchestration is what one reconcile's orchestration found, for the status.
type orchestration struct {
	resizePending bool
	storage       string   // progress message of a storage growth
	resizing      string   // claims asked to grow whose volumes have not yet (progress message)
	scaling       string   // progress message of a scale-down
	problem       *problem // a Degraded reason found by the orchestration
	rollout       *RolloutStep
	ring          map[string]string // nil when no ingester answered
	ringVia       string            // the IP of the pod that answered
	// resizeBlocked: the storage growth cannot proceed (a class without
	// allowVolumeExpansion); it must not hold every later rollout hostage.
	resizeBlocked bool
	// markersPending: a left-over prepare-shutdown marker could not be cancelled yet.
	markersPending bool
}

// liveState reads, uncached (decisions must not act on a stale cache), the Ingester's
// StatefulSets by name and its pods.
func (r *IngesterReconciler) liveState(ctx context.Context, ing *hearthv1.Ingester) (map[string]*appsv1.StatefulSet, []corev1.Pod, error) {
	stss, err := r.liveStatefulSets(ctx, ing)
	if err != nil {
		return nil, nil, err
	}
	var list corev1.PodList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(ing.Namespace), client.MatchingLabels(SelectorLabels(ing))); err != nil {
		return nil, nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return stss, list.Items, nil
}

// liveStatefulSets reads the Ingester's StatefulSets by name, uncached.
func (r *IngesterReconciler) liveStatefulSets(ctx context.Context, ing *hearthv1.Ingester) (map[string]*appsv1.StatefulSet, error) {
	stss := map[string]*appsv1.StatefulSet{}
	for _, z := range Zones(ing) {
		sts := &appsv1.StatefulSet{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: statefulSetName(ing, z.Name)}, sts)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		stss[sts.Name] = sts
	}
	return stss, nil
}

// podInfos describes the pods against their StatefulSets.
func podInfos(ing *hearthv1.Ingester, pods []corev1.Pod, stss map[string]*appsv1.StatefulSet) []PodInfo {
	out := make([]PodInfo, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		name := statefulSetName(ing, p.Labels[LabelZone])
		pi := PodInfoOf(p, stss[name])
		if pi.StatefulSet == "" {
			pi.StatefulSet, pi.Ordinal = name, ordinalOf(name, p.Name)
		}
		out = append(out, pi)
	}
	return out
}

// scaleDown carries out the replica decrease of one StatefulSet: prepare-shutdown on the
// pods that will go, all or none (in parallel, each call bounded by podCallTimeout). It
// returns whether the StatefulSet may shrink now.
//
// Intent first: the pods about to be prepared are written to status.scaleDown.prepared
// before any of them is called, so the status always lists every pod that may carry a
// marker. An operator that dies anywhere in between (a restart, a new leader) resumes
// from it: it prepares them again while the scale-down stands, or cancels their markers
// if replicas went back up.
func (r *IngesterReconciler) scaleDown(ctx context.Context, s *reconcileScope, sts string, live, desired int32) (bool, error) {
	ing, o := s.ing, &s.o
	sd := ing.Status.ScaleDown
	if sd == nil {
		sd = &hearthv1.ScaleDownStatus{}
	}
	plan := PlanScaleDown(sts, live, desired, s.infos, sd.Prepared)
	errs := inParallel(plan.Cancel, func(p PodInfo) error {
		return callPod(ctx, "cancel_prepare_shutdown", podCallTimeout, func(ctx context.Context) error {
			return r.Pods.CancelPrepareShutdown(ctx, podHTTPAddr(p.IP))
		})
	})
	for i, p := range plan.Cancel {
		if errs[i] != nil {
			logf.FromContext(ctx).Info("cancelling prepare-shutdown", "pod", p.Name, "err", errs[i].Error())
			continue // kept in the list: tried again next time
		}
		sd.Prepared = slices.DeleteFunc(sd.Prepared, func(n string) bool { return n == p.Name })
		r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, ReasonCancelledShutdown, "ScaleDown", "%s stays: replicas went back up, prepare-shutdown cancelled", p.Name)
	}
	if desired >= live {
		setScaleDown(ing, sd)
		return true, nil
	}
	bound, err := r.boundClaims(ctx, ing)
	if err != nil {
		return false, err
	}
	var notUpdated []string
	for name, st := range s.stss {
		if st.Status.UpdatedReplicas < st.Status.Replicas {
			notUpdated = append(notUpdated, name)
		}
	}
	if wait, degraded := ScaleDownWait(sts, live, desired, s.infos, bound, notUpdated); wait != "" {
		o.scaling = fmt.Sprintf("scale-down of %s from %d to %d waits: %s", sts, live, desired, wait)
		if degraded && o.problem == nil {
			o.problem = &problem{ReasonScaleDownWaits, o.scaling}
		}
		return false, nil
	}
	logf.FromContext(ctx).V(1).Info("scale-down may run", "sts", sts, "live", live, "desired", desired, "pods", len(s.infos), "prepare", names2(plan.Prepare), "skipped", plan.Skipped)
	intent := false
	for _, p := range plan.Prepare {
		if !slices.Contains(sd.Prepared, p.Name) {
			sd.Prepared = append(sd.Prepared, p.Name)
			intent = true
		}
	}
	sort.Strings(sd.Prepared)
	setScaleDown(ing, sd)
	if intent {
		if err := r.persistStatus(ctx, s); err != nil {
			return false, err
		}
	}
	errs = inParallel(plan.Prepare, func(p PodInfo) error {
		return callPod(ctx, "prepare_shutdown", podCallTimeout, func(ctx context.Context) error {
			return r.Pods.PrepareShutdown(ctx, podHTTPAddr(p.IP))
		})
	})
	var failed []string
	for i, p := range plan.Prepare {
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p.Name, errs[i]))
		}
	}
	if len(failed) > 0 {
		// Never leave half-prepared pods: undo on all of them, try again later. A pod
		// whose undo failed stays listed (it may carry a marker).
		undo := inParallel(plan.Prepare, func(p PodInfo) error {
			return callPod(ctx, "cancel_prepare_shutdown", podCallTimeout, func(ctx context.Context) error {
				return r.Pods.CancelPrepareShutdown(ctx, podHTTPAddr(p.IP))
			})
		})
		for i, p := range plan.Prepare {
			if undo[i] != nil {
				logf.FromContext(ctx).Info("undoing prepare-shutdown", "pod", p.Name, "err", undo[i].Error())
				continue
			}
			sd.Prepared = slices.DeleteFunc(sd.Prepared, func(n string) bool { return n == p.Name })
		}
		setScaleDown(ing, sd)
		msg := fmt.Sprintf("scale-down of %s from %d to %d waits: prepare-shutdown failed (%s); undone on every pod, retrying", sts, live, desired, strings.Join(failed, "; "))
		o.problem = &problem{ReasonScaleDownBlocked, msg}
		o.scaling = msg
		return false, nil
	}
	gone := append(names2(plan.Prepare), plan.Skipped...)
	sort.Strings(gone)
	o.scaling = fmt.Sprintf("scaling %s from %d to %d: %s prepared to flush, upload and leave the ring", sts, live, desired, strings.Join(gone, ", "))
	if intent {
		r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, ReasonScalingDown, "ScaleDown", "%s", o.scaling)
	}
	return true, nil
}

// boundClaims are the names of the Ingester's Bound claims (their volume may hold data).
func (r *IngesterReconciler) boundClaims(ctx context.Context, ing *hearthv1.Ingester) (map[string]bool, error) {
	pvcs, err := r.ingesterClaims(ctx, ing)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, pvc := range pvcs {
		out[pvc.Name] = pvc.Status.Phase == corev1.ClaimBound
	}
	return out, nil
}

// ingesterClaims are the Ingester's volume claims, by either label (ClaimOf), uncached.
func (r *IngesterReconciler) ingesterClaims(ctx context.Context, ing *hearthv1.Ingester) ([]corev1.PersistentVolumeClaim, error) {
	var list corev1.PersistentVolumeClaimList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(ing.Namespace), client.MatchingLabels{LabelName: appName, LabelComponent: component}); err != nil {
		return nil, err
	}
	out := list.Items[:0]
	for _, pvc := range list.Items {
		if mine, _ := ClaimOf(ing.Name, pvc.Labels); mine {
			out = append(out, pvc)
		}
	}
	return out, nil
}

// relabelClaims moves the Ingester's claims from app.kubernetes.io/instance to
// hearth.dev/instance (ClaimOf): ownerless objects must not carry Argo CD's tracking label.
func (r *IngesterReconciler) relabelClaims(ctx context.Context, ing *hearthv1.Ingester) error {
	pvcs, err := r.ingesterClaims(ctx, ing)
	if err != nil {
		return err
	}
	for i := range pvcs {
		pvc := &pvcs[i]
		if _, relabel := ClaimOf(ing.Name, pvc.Labels); !relabel {
			continue
		}
		before := pvc.DeepCopy()
		pvc.Labels = maps.Clone(pvc.Labels)
		delete(pvc.Labels, LabelInstance)
		pvc.Labels[LabelClaimInstance] = ing.Name
		if err := r.Patch(ctx, pvc, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("relabelling claim %s: %w", pvc.Name, err)
		}
	}
	return nil
}

// persistStatus writes the status now (the scale-down's intent) and makes it the base of
// the reconcile's final patch.
func (r *IngesterReconciler) persistStatus(ctx context.Context, s *reconcileScope) error {
	if err := r.patchStatus(ctx, s.orig, s.ing); err != nil {
		return err
	}
	s.orig = &hearthv1.Ingester{ObjectMeta: s.orig.ObjectMeta, Spec: s.orig.Spec, Status: *s.ing.Status.DeepCopy()}
	return nil
}

func names2(ps []PodInfo) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func setScaleDown(ing *hearthv1.Ingester, sd *hearthv1.ScaleDownStatus) {
	if len(sd.Prepared) == 0 {
		ing.Status.ScaleDown = nil
		return
	}
	ing.Status.ScaleDown = sd
}

// prunePrepared drops pods that no longer exist from status.scaleDown.
func prunePrepared(ing *hearthv1.Ingester, pods []PodInfo) {
	sd := ing.Status.ScaleDown
	if sd == nil {
		return
	}
	exists := map[string]bool{}
	for _, p := range pods {
		exists[p.Name] = true
	}
	sd.Prepared = slices.DeleteFunc(slices.Clone(sd.Prepared), func(n string) bool { return !exists[n] })
	setScaleDown(ing, &hearthv1.ScaleDownStatus{Prepared: sd.Prepared})
}

// ringMembers asks every ready pod for the ring at once (ringCallTimeout each) and takes
// the first answer; nil when none answered.
func (r *IngesterReconciler) ringMembers(ctx context.Context, pods []corev1.Pod) (map[string]string, string) {
	if r.Ring == nil {
		return nil, ""
	}
	var ips []string
	for _, p := range pods {
		if p.Status.PodIP != "" && podReady(&p) && p.DeletionTimestamp.IsZero() {
			ips = append(ips, p.Status.PodIP)
		}
	}
	if len(ips) == 0 {
		return nil, ""
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the slower reads stop once one answered
	type answer struct {
		members map[string]string
		ip      string
		err     error
	}
	answers := make(chan answer, len(ips))
	for _, ip := range ips {
		go func() {
			var m map[string]string
			err := callPod(ctx, "ring", ringCallTimeout, func(ctx context.Context) error {
				var err error
				m, err = r.Ring.Ring(ctx, podHTTPAddr(ip))
				return err
			})
			answers <- answer{m, ip, err}
		}()
	}
	for range ips {
		a := <-answers
		if a.err == nil {
			return maps.Clone(a.members), a.ip
		}
		logf.FromContext(ctx).V(1).Info("reading the ring", "pod", a.ip, "err", a.err.Error())
	}
	return nil, ""
}

// ringHygiene forgets UNHEALTHY ring members whose pod no longer exists.
func (r *IngesterReconciler) ringHygiene(ctx context.Context, ing *hearthv1.Ingester, ring map[string]string, via string, pods []PodInfo) {
	if ring == nil || via == "" || r.Pods == nil {
		return
	}
	exists := map[string]bool{}
	for _, p := range pods {
		exists[p.Name] = true
	}
	for _, id := range ForgetMembers(ring, exists) {
		err := callPod(ctx, "forget", podCallTimeout, func(ctx context.Context) error { return r.Pods.Forget(ctx, podHTTPAddr(via), id) })
		if err != nil {
			logf.FromContext(ctx).Info("forgetting a ring member", "member", id, "err", err.Error())
			continue
		}
		delete(ring, id)
		r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, ReasonForgotMember, "RingHygiene",
			"forgot ring member %s: UNHEALTHY and its pod no longer exists", id)
	}
}

// rollout replaces outdated pods (see NextRollout). A healthy pod is evicted through the
// Eviction API, so that the PodDisruptionBudget arbitrates between the rollout and other
// voluntary disruptions (a node drain): together they never take more than one pod down.
// A refused eviction (429: the budget is used up) makes the rollout wait. Pods that
// cannot start (stuck) are deleted whatever the budget, and so is a whole zone of a
// zone-aware rollout (the budget allows one pod; a zone is several, by design).
func (r *IngesterReconciler) rollout(ctx context.Context, ing *hearthv1.Ingester, pods []PodInfo, ring map[string]string) (*RolloutStep, error) {
	var zoneOrder []string
	for _, z := range ing.Spec.Zones {
		zoneOrder = append(zoneOrder, z.Name)
	}
	step := NextRollout(pods, ring, zoneOrder)
	if step.Action == RolloutDelete {
		stuck := map[string]bool{}
		for _, p := range pods {
			stuck[p.Name] = p.Stuck != ""
		}
		for _, name := range step.Delete {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ing.Namespace, Name: name}}
			how := "deleted"
			var err error
			if stuck[name] || len(zoneOrder) > 0 {
				err = r.Delete(ctx, pod)
			} else {
				how = "evicted"
				err = r.SubResource("eviction").Create(ctx, pod, &policyv1.Eviction{})
			}
			switch {
			case apierrors.IsTooManyRequests(err):
				step.Action, step.Delete = RolloutWait, nil
				step.Message = fmt.Sprintf("%d pods outdated; waiting for the PodDisruptionBudget to allow evicting %s: %v", step.Outdated, name, err)
				logf.FromContext(ctx).Info("rollout waits for the disruption budget", "pod", name, "err", err.Error())
			case err != nil && !apierrors.IsNotFound(err):
				return &step, fmt.Errorf("replacing pod %s: %w", name, err)
			default:
				podsReplacedTotal.WithLabelValues(ing.Namespace, ing.Name, how).Inc()
			}
		}
		if step.Action == RolloutDelete {
			r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, ReasonReplacing, "Rollout", "%s", step.Message)
			logf.FromContext(ctx).Info("rollout", "replaced", step.Delete, "why", step.Message)
		}
	}
	if step.Action == RolloutDone {
		ing.Status.Rollout = nil
	} else {
		ing.Status.Rollout = &hearthv1.RolloutStatus{InFlight: step.InFlight, Outdated: step.Outdated, Updated: step.Updated, Message: step.Message}
	}
	return &step, nil
}

// growStorage expands the claims of one StatefulSet whose claim template is smaller than
// spec.storage.size, then deletes the StatefulSet with orphan propagation (its pods keep
// running) so that the next reconcile recreates it with the new template.
func (r *IngesterReconciler) growStorage(ctx context.Context, ing *hearthv1.Ingester, sts *appsv1.StatefulSet, o *orchestration) error {
	var template resource.Quantity
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if t.Name == DataVolume {
			template = t.Spec.Resources.Requests[corev1.ResourceStorage]
		}
	}
	want := ing.Spec.Storage.Size
	var claims []ClaimInfo
	pvcs := map[string]*corev1.PersistentVolumeClaim{}
	classes := map[string]classExpansion{}
	for i := range ptr.Deref(sts.Spec.Replicas, 0) {
		pvc := &corev1.PersistentVolumeClaim{}
		name := fmt.Sprintf("%s-%s-%d", DataVolume, sts.Name, i)
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: name}, pvc)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		pvcs[name] = pvc
		c, err := r.claimInfo(ctx, pvc, classes)
		if err != nil {
			return err
		}
		claims = append(claims, c)
	}
	plan := PlanStorage(want, template, claims)
	switch {
	case plan.Blocked != "":
		// Progressing stays StorageResizePending; Degraded says why.
		o.problem = &problem{ReasonNotExpandable, plan.Blocked + "; set allowVolumeExpansion: true on the StorageClass (the size cannot shrink back); rollouts go on meanwhile with the volumes' current size"}
		o.resizeBlocked = true
		return nil
	case len(plan.Resize) > 0:
		for _, name := range plan.Resize {
			pvc := pvcs[name]
			before := pvc.DeepCopy()
			pvc.Spec.Resources.Requests = pvc.Spec.Resources.Requests.DeepCopy()
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = want
			if err := r.Patch(ctx, pvc, client.MergeFrom(before)); err != nil {
				o.problem = &problem{ReasonNotExpandable, fmt.Sprintf("expanding %s to %s: %v", name, want.String(), err)}
				o.storage = o.problem.message
				// Refused (the class does not allow expansion, seen by the API server's
				// admission when the operator cannot read classes): blocked like a class
				// known not to allow it, so rollouts go on.
				o.resizeBlocked = apierrors.IsForbidden(err)
				return nil
			}
			r.Recorder.Eventf(ing, pvc, corev1.EventTypeNormal, ReasonResizingStorage, "ExpandVolume", "requested %s for %s", want.String(), name)
		}
		o.storage = fmt.Sprintf("expanding %s to %s", strings.Join(plan.Resize, ", "), want.String())
	case plan.Recreate:
		if err := r.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationOrphan), client.Preconditions{UID: &sts.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("recreating StatefulSet %s: %w", sts.Name, err)
		}
		r.Recorder.Eventf(ing, sts, corev1.EventTypeNormal, ReasonRecreatingSts, "ExpandVolume",
			"claims of %s requested %s: recreating the StatefulSet with the new claim template (pods keep running)", sts.Name, want.String())
		o.storage = fmt.Sprintf("recreating StatefulSet %s with %s claims (pods keep running)", sts.Name, want.String())
	}
	return nil
}

// claimInfo describes a claim and its class's expansion (classes caches the lookups).
func (r *IngesterReconciler) claimInfo(ctx context.Context, pvc *corev1.PersistentVolumeClaim, classes map[string]classExpansion) (ClaimInfo, error) {
	c := ClaimInfo{Name: pvc.Name, Requested: pvc.Spec.Resources.Requests[corev1.ResourceStorage], StorageClass: ptr.Deref(pvc.Spec.StorageClassName, "")}
	if c.StorageClass == "" {
		return c, nil
	}
	e, ok := classes[c.StorageClass]
	if !ok {
		var err error
		if e, err = r.storageClassExpansion(ctx, c.StorageClass); err != nil {
			return c, err
		}
		classes[c.StorageClass] = e
	}
	c.StorageClassFound, c.ExpansionAllowed = e.found, e.allowed
	return c, nil
}

// classExpansion is what the operator knows of a StorageClass's volume expansion.
type classExpansion struct{ found, allowed bool }

// storageClassExpansion reads a StorageClass. StorageClasses are cluster-scoped, and a
// namespace-scoped install may not grant reading them (the chart's
// rbac.readStorageClasses): without the permission the class counts as found and
// expandable, so the claim's resize is requested and the API server's admission refuses
// it when the class does not allow expansion (Degraded StorageNotExpandable with its message).
func (r *IngesterReconciler) storageClassExpansion(ctx context.Context, name string) (classExpansion, error) {
	sc := &storagev1.StorageClass{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, sc)
	switch {
	case err == nil:
		return classExpansion{found: true, allowed: ptr.Deref(sc.AllowVolumeExpansion, false)}, nil
	case apierrors.IsNotFound(err):
		return classExpansion{}, nil
	case apierrors.IsForbidden(err):
		logf.FromContext(ctx).V(1).Info("cannot read the StorageClass (no RBAC for it): the API server decides on expansion", "storageClass", name, "err", err.Error())
		return classExpansion{found: true, allowed: true}, nil
	}
	return classExpansion{}, err
}

// volumesResizing looks, once the claim templates ask for spec.storage.size, at the claims
// whose volumes the storage provider has not grown yet: the growth is done when every
// claim's status.capacity has the new size, or failed when the provider says it cannot.
//
// Claims in use that ask for less (retained from before a growth and reattached by a
// scale-up: ReattachedClaims) are grown the same way, or the class that forbids it is
// Degraded; the status never says Complete over a volume smaller than the spec.
func (r *IngesterReconciler) volumesResizing(ctx context.Context, ing *hearthv1.Ingester, stss map[string]*appsv1.StatefulSet, o *orchestration) error {
	pvcs, err := r.ingesterClaims(ctx, ing)
	if err != nil {
		return err
	}
	want := ing.Spec.Storage.Size
	inUse := map[string]bool{}
	for _, sts := range stss {
		for i := range ptr.Deref(sts.Spec.Replicas, 0) {
			inUse[fmt.Sprintf("%s-%s-%d", DataVolume, sts.Name, i)] = true
		}
	}
	var small []ClaimInfo
	byName := map[string]*corev1.PersistentVolumeClaim{}
	classes := map[string]classExpansion{}
	for i := range pvcs {
		pvc := &pvcs[i]
		if !pvc.DeletionTimestamp.IsZero() || !ReattachedClaim(want, pvc.Spec.Resources.Requests[corev1.ResourceStorage], inUse[pvc.Name]) {
			continue
		}
		c, err := r.claimInfo(ctx, pvc, classes)
		if err != nil {
			return err
		}
		small, byName[pvc.Name] = append(small, c), pvc
	}
	if plan := PlanStorage(want, resource.Quantity{}, small); plan.Blocked != "" {
		o.resizing = plan.Blocked
		if o.problem == nil {
			o.problem = &problem{ReasonNotExpandable, plan.Blocked + " (claims reattached by a scale-up); set allowVolumeExpansion: true on the StorageClass"}
		}
		return nil
	} else if len(plan.Resize) > 0 {
		for _, name := range plan.Resize {
			pvc := byName[name]
			before := pvc.DeepCopy()
			pvc.Spec.Resources.Requests = pvc.Spec.Resources.Requests.DeepCopy()
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = want
			if err := r.Patch(ctx, pvc, client.MergeFrom(before)); err != nil {
				if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
					return fmt.Errorf("expanding the reattached claim %s: %w", name, err)
				}
				// Refused (the class does not allow expansion): Degraded says why.
				o.resizing = fmt.Sprintf("expanding the reattached claim %s to %s: %v", name, want.String(), err)
				if o.problem == nil {
					o.problem = &problem{ReasonNotExpandable, o.resizing}
				}
				return nil
			}
			r.Recorder.Eventf(ing, pvc, corev1.EventTypeNormal, ReasonResizingStorage, "ExpandVolume", "requested %s for the reattached claim %s", want.String(), name)
		}
		o.resizing = fmt.Sprintf("expanding the reattached claims %s to %s", strings.Join(plan.Resize, ", "), want.String())
		return nil
	}
	var claims []ClaimResize
	for _, pvc := range pvcs {
		if !pvc.DeletionTimestamp.IsZero() || pvc.Status.Phase != corev1.ClaimBound {
			continue
		}
		c := ClaimResize{Name: pvc.Name, Requested: pvc.Spec.Resources.Requests[corev1.ResourceStorage],
			Capacity: pvc.Status.Capacity[corev1.ResourceStorage], Status: string(pvc.Status.AllocatedResourceStatuses[corev1.ResourceStorage])}
		for _, cond := range pvc.Status.Conditions {
			if (cond.Type == corev1.PersistentVolumeClaimControllerResizeError || cond.Type == corev1.PersistentVolumeClaimNodeResizeError) &&
				cond.Status == corev1.ConditionTrue {
				c.Errors = append(c.Errors, cond.Message)
			}
		}
		claims = append(claims, c)
	}
	waiting, failed := ResizeProgress(want, claims)
	if len(waiting) == 0 {
		return nil
	}
	o.resizing = fmt.Sprintf("%d/%d volumes have %s; waiting for the storage provider to grow %s", len(claims)-len(waiting), len(claims),
		want.String(), strings.Join(waiting, ", "))
	if failed != "" && o.problem == nil {
		o.problem = &problem{ReasonResizeFailed, failed}
	}
	return nil
}

// finalize runs on a deleted Ingester: every pod is marked for a final stop and flushes
// and uploads, then the finalizer goes and the garbage collector removes the children.
// The flushes run in the background (they wait for the upload: minutes with a large head
// or a slow bucket); each pass starts the missing ones and looks at how they went, so a
// reconcile never waits on them.
func (r *IngesterReconciler) finalize(ctx context.Context, s *reconcileScope) (reconcile.Result, error) {
	ing := s.ing
	if !controllerutil.ContainsFinalizer(ing, Finalizer) {
		return reconcile.Result{}, nil
	}
	s.phase = "read"
	_, pods, err := r.liveState(ctx, ing)
	if err != nil {
		return reconcile.Result{}, err
	}
	s.phase = "flush"
	orig := s.orig
	plan := PlanDeletion(ing.Spec.Paused, podInfos(ing, pods, nil))
	if DeletionGivesUp(ing.Spec.DeletionPolicy, ing.Spec.DeletionFlushTimeout, time.Since(ing.DeletionTimestamp.Time)) {
		var unflushed []string
		for _, p := range plan.Flush {
			if op := r.flushes.get(flushKey(ing, p)); op == nil || !op.done || op.err != nil {
				unflushed = append(unflushed, p.Name)
			}
		}
		sort.Strings(unflushed)
		if len(unflushed) > 0 {
			r.Recorder.Eventf(ing, nil, corev1.EventTypeWarning, ReasonDeletedUnflushed, "Delete",
				"deletionPolicy FlushWithTimeout: deleting without the flushes of %s (what they held and the bucket has not is lost)", strings.Join(unflushed, ", "))
		}
		return reconcile.Result{}, r.removeFinalizer(ctx, s)
	}
	progressing := metav1.Condition{Type: hearthv1.ConditionProgressing, Status: metav1.ConditionTrue, ObservedGeneration: ing.Generation}
	if plan.Wait != "" {
		progressing.Reason, progressing.Message = ReasonDeletionPaused, plan.Wait
		meta.SetStatusCondition(&ing.Status.Conditions, progressing)
		return reconcile.Result{RequeueAfter: r.resync()}, r.patchStatus(ctx, orig, ing)
	}
	// How long flushes have been failing sets when a failed one is tried again.
	var failingFor time.Duration
	if c := meta.FindStatusCondition(orig.Status.Conditions, hearthv1.ConditionDegraded); c != nil && c.Reason == ReasonFlushFailed && c.Status == metav1.ConditionTrue {
		failingFor = time.Since(c.LastTransitionTime.Time)
	}
	backoff := DeletionBackoff(failingFor)
	var start []PodInfo
	var failed []string
	running, done := 0, 0
	for _, p := range plan.Flush {
		op := r.flushes.get(flushKey(ing, p))
		switch {
		case op == nil:
			start = append(start, p)
		case !op.done:
			running++
		case op.err == nil:
			done++
		case time.Since(op.finished) >= backoff:
			start = append(start, p) // tried again
		default:
			failed = append(failed, fmt.Sprintf("%s: %v", p.Name, op.err))
		}
	}
	// Mark the pods first (in parallel, seconds at most): pods keep taking writes until
	// they go, and a marked pod's stop flushes and uploads what came after its flush.
	errs := inParallel(start, func(p PodInfo) error {
		return callPod(ctx, "prepare_shutdown", podCallTimeout, func(ctx context.Context) error {
			return r.Pods.PrepareShutdown(ctx, podHTTPAddr(p.IP))
		})
	})
	for i, p := range start {
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p.Name, errs[i]))
			continue
		}
		r.flushes.start(flushKey(ing, p), "flush", func(ctx context.Context) error { return r.Pods.Flush(ctx, podHTTPAddr(p.IP)) })
		running++
	}
	sort.Strings(failed)
	deletionFlushesGauge.WithLabelValues(ing.Namespace, ing.Name, "running").Set(float64(running))
	deletionFlushesGauge.WithLabelValues(ing.Namespace, ing.Name, "failed").Set(float64(len(failed)))
	deletionFlushesGauge.WithLabelValues(ing.Namespace, ing.Name, "done").Set(float64(done))
	if len(failed) > 0 || running > 0 {
		requeue := time.Second // a flush is running: look again soon
		msg := fmt.Sprintf("deletion waits for %d/%d ingesters to flush to object storage", running, len(plan.Flush))
		if len(failed) > 0 {
			msg = fmt.Sprintf("deletion waits: %d/%d ingesters could not flush to object storage (%s); the Ingester is deleted once every flush succeeds",
				len(failed), len(plan.Flush), strings.Join(failed, "; "))
			r.setDegraded(ing, orig, &problem{ReasonFlushFailed, msg})
			if running == 0 {
				requeue = backoff
			}
		}
		progressing.Reason, progressing.Message = ReasonDeleting, msg
		meta.SetStatusCondition(&ing.Status.Conditions, progressing)
		if err := r.patchStatus(ctx, orig, ing); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: requeue}, nil
	}
	r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, "Flushed", "Delete", "%d ingesters flushed to object storage (%d skipped: not running); removing the finalizer",
		len(plan.Flush), len(plan.Skipped))
	return reconcile.Result{}, r.removeFinalizer(ctx, s)
}

// removeFinalizer lets the Ingester go (the garbage collector removes the children).
func (r *IngesterReconciler) removeFinalizer(ctx context.Context, s *reconcileScope) error {
	ing := s.ing
	s.phase = "finalizer"
	before := ing.DeepCopy()
	controllerutil.RemoveFinalizer(ing, Finalizer)
	if err := r.Patch(ctx, ing, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	r.flushes.forget(ing.Namespace + "/" + ing.Name + "/")
	return nil
}

// flushKey names one pod's deletion flush: a recreated pod (new UID) is flushed anew.
func flushKey(ing *hearthv1.Ingester, p PodInfo) string {
	return ing.Namespace + "/" + ing.Name + "/" + p.Name + "/" + string(p.UID)
}

// ensureFinalizer adds the finalizer (a metadata patch: the spec is never written).
func (r *IngesterReconciler) ensureFinalizer(ctx context.Context, ing *hearthv1.Ingester) error {
	if controllerutil.ContainsFinalizer(ing, Finalizer) {
		return nil
	}
	before := ing.DeepCopy()
	controllerutil.AddFinalizer(ing, Finalizer)
	if err := r.Patch(ctx, ing, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding the finalizer: %w", err)
	}
	return nil
}
