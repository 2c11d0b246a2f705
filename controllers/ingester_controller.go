// Package controllers reconciles Ingester resources: read, render (pure functions),
// apply (server-side, one field manager), report (status, conditions, Events, metrics).
package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// FieldManager is the one server-side apply field manager the operator writes with.
const FieldManager = "hearth-operator"

// Reasons of the conditions.
const (
	ReasonAllReady        = "AllReplicasReady"
	ReasonNotReady        = "ReplicasNotReady"
	ReasonScaledToZero    = "ScaledToZero"
	ReasonComplete        = "Complete"
	ReasonApplying        = "Applying"
	ReasonScaling         = "Scaling"
	ReasonRollingOut      = "RollingOut"
	ReasonWaitingReady    = "WaitingForReady"
	ReasonPaused          = "Paused"
	ReasonResizePending   = "StorageResizePending"
	ReasonAsExpected      = "AsExpected"
	ReasonSecretNotFound  = "SecretNotFound"
	ReasonSecretKey       = "SecretKeyMissing"
	ReasonSecretError     = "SecretUnreadable"
	ReasonStorageClass    = "StorageClassNotFound"
	ReasonPodsNotStarting = "PodsNotStarting"
	ReasonUnschedulable   = "PodsUnschedulable"
	ReasonApplyFailed     = "ApplyFailed"
)

// IngesterReconciler reconciles an Ingester into its children.
type IngesterReconciler struct {
	client.Client
	// APIReader reads what the operator does not cache: the referenced Secret and
	// StorageClass, with get only (no list or watch of Secrets anywhere).
	APIReader client.Reader
	// Recorder records Events.
	Recorder events.EventRecorder
	// Ring reads ring membership from a ready ingester; nil leaves status.ring empty.
	Ring RingReader
	// Pods calls the ingesters' HTTP API (prepare-shutdown, flush, forget). Default
	// HTTPPodClient.
	Pods PodClient
	// Resync is how often an Ingester is looked at again without an event (to refresh
	// the ring and to notice a missing Secret or StorageClass has appeared). Default 30s.
	Resync time.Duration
	// MaxConcurrentReconciles is how many Ingesters are reconciled at once (default 4):
	// one Ingester's slow pods never hold up another's reconcile.
	MaxConcurrentReconciles int
	// FlushTimeout bounds one pod's flush when its Ingester is deleted (default 5
	// minutes). The flush runs in the background; reconciles only look at its outcome.
	FlushTimeout time.Duration

	flushes operations // the deletion flushes running in the background
	// markers are the pod UIDs whose prepare-shutdown marker was cancelled (one call per
	// pod incarnation; a new leader calls each running pod once more, harmlessly).
	markers sync.Map
}

// RBAC: only the verbs the operator uses. Children are written with server-side apply
// (patch; create for a first apply), never updated; deleted are only the StatefulSets
// (recreated after a storage growth), the per-revision ConfigMaps no pod uses, pods
// (stuck ones, zone rollouts), the NetworkPolicy and PodMonitor when turned off.
// +kubebuilder:rbac:groups=hearth.dev,resources=ingesters,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=hearth.dev,resources=ingesters/status,verbs=patch
// +kubebuilder:rbac:groups=hearth.dev,resources=ingesters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// reconcileScope is one reconcile's state, shared by its phases; the deferred report
// turns it into the status (one patch) and the metrics.
type reconcileScope struct {
	ing  *hearthv1.Ingester
	orig *hearthv1.Ingester // what the status was (the patch is computed against it)
	// Live StatefulSets by name and pods, read uncached; stss is nil until read.
	stss     map[string]*appsv1.StatefulSet
	pods     []corev1.Pod
	infos    []PodInfo
	o        orchestration
	degraded *problem // the preflight's problem (the orchestration's and the pods' come later)
	// overrides is an invalid spec.overrides (the least urgent problem: the ingesters
	// run on, with the last valid overrides).
	overrides *problem
	// held are the StatefulSets whose shrink waits (ScaleDownWait), at the replicas they
	// keep meanwhile: they count as settled at that size, so the rollout the scale-down
	// waits for can run.
	held   map[string]int32
	phase  string // the phase running, or the one that failed
	result string
	failed error // the error that ended the reconcile (retried after ErrorBackoff)
}

// failingFor is how long the Degraded condition has said the reconcile fails.
func (s *reconcileScope) failingFor() time.Duration {
	c := meta.FindStatusCondition(s.orig.Status.Conditions, hearthv1.ConditionDegraded)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != PhaseFailedReason(s.phase) {
		return 0
	}
	return time.Since(c.LastTransitionTime.Time)
}

// ErrorBackoff is when a failed reconcile is tried again: as long as it has been failing,
// between 1s and limit (the resync period). Bounded, so that a fixed cause (a second
// PodDisruptionBudget removed, the API server back) is noticed within limit.
func ErrorBackoff(failingFor, limit time.Duration) time.Duration {
	return min(max(failingFor, time.Second), limit)
}

// PhaseFailedReason is the Degraded reason of a reconcile that failed in phase:
// ApplyFailed, RolloutFailed, StorageFailed, ReadFailed...
func PhaseFailedReason(phase string) string {
	if phase == "" {
		return "ReconcileFailed"
	}
	return strings.ToUpper(phase[:1]) + phase[1:] + "Failed"
}

// phase is one named step of a reconcile. A phase that returns an error ends the
// reconcile (the report still runs); stop ends it without an error.
type phase struct {
	name string
	run  func(ctx context.Context, s *reconcileScope) (stop bool, err error)
}

// Reconcile is one pass through named phases — finalizer, preflight, read, apply, ring,
// hygiene, storage, rollout — and one deferred report: the status is computed from what
// the phases saw and patched once (the only other status write is the scale-down's
// intent, which must be stored before the pods are called). It never waits on a pod
// longer than one call's timeout (seconds) and never on the bucket: long operations run
// in the background and later passes observe them (requeue).
func (r *IngesterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	start := time.Now()
	ing := &hearthv1.Ingester{}
	if err := r.Get(ctx, req.NamespacedName, ing); err != nil {
		if apierrors.IsNotFound(err) {
			forgetIngesterMetrics(req.Namespace, req.Name)
			r.flushes.forget(req.Namespace + "/" + req.Name + "/")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	s := &reconcileScope{ing: ing, orig: ing.DeepCopy(), result: "success"}
	defer func() {
		reconcileDuration.WithLabelValues(req.Namespace, req.Name).Observe(time.Since(start).Seconds())
		if err != nil || s.failed != nil {
			s.result = "error"
			reconcileErrorsTotal.WithLabelValues(req.Namespace, req.Name, s.phase).Inc()
		}
		reconcilesTotal.WithLabelValues(req.Namespace, req.Name, s.result).Inc()
	}()
	if !ing.DeletionTimestamp.IsZero() {
		// Every pod flushes, then the finalizer goes and the garbage collector removes
		// the children (they carry owner references).
		s.result = "deleting"
		res, err := r.finalize(ctx, s)
		if err != nil {
			// A bounded retry, not controller-runtime's backoff (up to ~16 minutes).
			s.failed = err
			logf.FromContext(ctx).Info("reconcile failed; retried", "phase", s.phase, "err", err.Error())
			return ctrl.Result{RequeueAfter: ErrorBackoff(0, r.resync())}, nil
		}
		return res, nil
	}
	defer func() {
		if rerr := r.report(ctx, s, err); rerr != nil && err == nil {
			err = rerr
		}
		if err == nil {
			res = ctrl.Result{RequeueAfter: r.requeueAfter(s)}
			return
		}
		// The error is in Degraded (report) and the log; the Ingester is looked at again
		// after a bounded backoff instead of controller-runtime's (which reaches ~16
		// minutes after a few failures and hides the problem meanwhile).
		s.failed = err
		logf.FromContext(ctx).Info("reconcile failed; retried", "phase", s.phase, "err", err.Error())
		res, err = ctrl.Result{RequeueAfter: ErrorBackoff(s.failingFor(), r.resync())}, nil
	}()
	for _, ph := range []phase{
		{"finalizer", r.phaseFinalizer},
		{"preflight", r.phasePreflight},
		{"read", r.phaseRead},
		{"overrides", r.phaseOverrides},
		{"apply", r.phaseApply},
		{"markers", r.phaseMarkers},
		{"ring", r.phaseRing},
		{"hygiene", r.phaseHygiene},
		{"storage", r.phaseStorage},
		{"rollout", r.phaseRollout},
		{"configs", r.phaseConfigs},
	} {
		s.phase = ph.name
		stop, err := ph.run(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if stop {
			break
		}
	}
	if !ing.Spec.Paused {
		s.phase = "monitoring"
		r.reconcileMonitoring(ctx, ing) // once a pass; never fails the reconcile (render_monitoring.go)
	}
	s.phase = "report"
	return ctrl.Result{}, nil
}

func (r *IngesterReconciler) phaseFinalizer(ctx context.Context, s *reconcileScope) (bool, error) {
	return false, r.ensureFinalizer(ctx, s.ing)
}

// phasePreflight checks what the operator cannot fix itself.
func (r *IngesterReconciler) phasePreflight(ctx context.Context, s *reconcileScope) (bool, error) {
	s.degraded = r.preflight(ctx, s.ing)
	if s.ing.Spec.Paused {
		s.result = "paused"
	}
	return false, nil
}

// phaseRead reads the live StatefulSets and pods, uncached: the orchestration acts on them.
func (r *IngesterReconciler) phaseRead(ctx context.Context, s *reconcileScope) (bool, error) {
	stss, pods, err := r.liveState(ctx, s.ing)
	if err != nil {
		return false, err
	}
	s.stss, s.pods, s.infos = stss, pods, podInfos(s.ing, pods, stss)
	return false, nil
}

// phaseApply renders the children and applies them, holding back a StatefulSet's shrink
// until its leaving pods are prepared, and a StatefulSet being recreated (storage
// growth) until it is gone. It rereads the StatefulSets afterwards.
func (r *IngesterReconciler) phaseApply(ctx context.Context, s *reconcileScope) (bool, error) {
	ing, o := s.ing, &s.o
	if ing.Spec.Paused {
		return false, nil
	}
	prunePrepared(ing, s.infos)
	// Turning spec.tls on or off goes through the switch step (tls_switch.go).
	step := tlsStepOf(ing, s.pods)
	objs, err := Render(withTLSStep(ing, step))
	if err != nil {
		return false, err
	}
	applied := false
	for _, obj := range objs {
		if sts, ok := obj.(*appsv1.StatefulSet); ok {
			live := s.stss[sts.Name]
			if live != nil && !live.DeletionTimestamp.IsZero() {
				o.resizePending = true
				o.storage = fmt.Sprintf("waiting for StatefulSet %s to be deleted (orphaning its pods) before recreating it", sts.Name)
				continue
			}
			want, have := ptr.Deref(sts.Spec.Replicas, 1), int32(0)
			if live != nil {
				if KeepClaimSizes(sts, live) {
					o.resizePending = true
				}
				have = ptr.Deref(live.Spec.Replicas, 1)
			} else {
				// Missing (recreated after a storage growth, or deleted with
				// --cascade=orphan): its pods may still run, and a StatefulSet created
				// smaller would delete the high ordinals unprepared.
				have = OrphanReplicas(sts.Name, s.infos)
			}
			if have > want || live != nil {
				if r.Pods != nil {
					may, err := r.scaleDown(ctx, s, sts.Name, have, want)
					if err != nil {
						return false, err
					}
					if !may {
						sts.Spec.Replicas = ptr.To(have)
						if s.held == nil {
							s.held = map[string]int32{}
						}
						s.held[sts.Name] = have
					}
				}
			}
		}
		if err := r.apply(ctx, ing, obj); err != nil {
			return false, err
		}
		applied = true
	}
	if err := r.pruneNetworkPolicy(ctx, ing); err != nil {
		return false, err
	}
	if applied {
		stss, err := r.liveStatefulSets(ctx, ing)
		if err != nil {
			return false, err
		}
		s.stss = stss
	}
	return false, nil
}

// phaseMarkers cancels the prepare-shutdown marker of every running pod below the desired
// count, once per pod incarnation (MarkersToCancel): pods brought back by a scale-up carry
// the marker their scale-down left on the retained volume.
func (r *IngesterReconciler) phaseMarkers(ctx context.Context, s *reconcileScope) (bool, error) {
	if s.ing.Spec.Paused || r.Pods == nil {
		return false, nil
	}
	desired := map[string]int32{}
	for _, z := range Zones(s.ing) {
		desired[statefulSetName(s.ing, z.Name)] = z.Replicas
	}
	cleared := map[types.UID]bool{}
	for _, p := range s.infos {
		if p.Terminating {
			r.markers.Delete(p.UID) // its incarnation ends: keep the set bounded
			continue
		}
		if _, ok := r.markers.Load(p.UID); ok {
			cleared[p.UID] = true
		}
	}
	todo := MarkersToCancel(s.infos, desired, cleared)
	errs := inParallel(todo, func(p PodInfo) error {
		return callPod(ctx, "cancel_prepare_shutdown", podCallTimeout, func(ctx context.Context) error {
			return r.Pods.CancelPrepareShutdown(ctx, podHTTPAddr(p.IP))
		})
	})
	for i, p := range todo {
		if errs[i] != nil {
			s.o.markersPending = true // tried again soon
			logf.FromContext(ctx).V(1).Info("cancelling a left-over prepare-shutdown marker", "pod", p.Name, "err", errs[i].Error())
			continue
		}
		r.markers.Store(p.UID, struct{}{})
	}
	return false, nil
}

// phaseRing reads the ring from the first ready pod that answers.
func (r *IngesterReconciler) phaseRing(ctx context.Context, s *reconcileScope) (bool, error) {
	s.o.ring, s.o.ringVia = r.ringMembers(ctx, s.pods)
	return false, nil
}

// phaseHygiene forgets UNHEALTHY ring members without a pod and relabels the claims
// (ClaimOf).
func (r *IngesterReconciler) phaseHygiene(ctx context.Context, s *reconcileScope) (bool, error) {
	if s.ing.Spec.Paused {
		return false, nil
	}
	r.ringHygiene(ctx, s.ing, s.o.ring, s.o.ringVia, s.infos)
	return false, r.relabelClaims(ctx, s.ing)
}

// phaseStorage grows the volumes (then recreates the StatefulSets), or watches them grow.
func (r *IngesterReconciler) phaseStorage(ctx context.Context, s *reconcileScope) (bool, error) {
	ing, o := s.ing, &s.o
	if ing.Spec.Paused {
		return false, nil
	}
	if o.resizePending && o.problem == nil {
		for _, sts := range s.stss {
			if sts.DeletionTimestamp.IsZero() {
				if err := r.growStorage(ctx, ing, sts, o); err != nil {
					return false, err
				}
			}
		}
	}
	if !o.resizePending && statefulSetsSettled(ing, s.stss, s.held) == "" {
		if err := r.volumesResizing(ctx, ing, s.stss, o); err != nil {
			return false, err
		}
	}
	return false, nil
}

// phaseRollout replaces outdated pods, once the StatefulSets are settled and no storage
// growth runs.
func (r *IngesterReconciler) phaseRollout(ctx context.Context, s *reconcileScope) (bool, error) {
	ing := s.ing
	if !RolloutMayRun(ing.Spec.Paused, s.o.resizePending, s.o.resizeBlocked, statefulSetsSettled(ing, s.stss, s.held)) {
		return false, nil
	}
	replicas, zoneOf := map[string]int32{}, map[string]string{}
	for _, z := range Zones(ing) {
		if sts := s.stss[statefulSetName(ing, z.Name)]; sts != nil {
			replicas[sts.Name], zoneOf[sts.Name] = ptr.Deref(sts.Spec.Replicas, 1), z.Name
		}
	}
	var err error
	s.o.rollout, err = r.rollout(ctx, ing, WithMissing(s.infos, replicas, zoneOf), s.o.ring)
	return false, err
}

// phaseConfigs deletes the per-revision ConfigMaps no pod and no StatefulSet uses any more
// (StaleConfigMaps). Not while paused: the current one may not be applied yet.
func (r *IngesterReconciler) phaseConfigs(ctx context.Context, s *reconcileScope) (bool, error) {
	ing := s.ing
	if ing.Spec.Paused || s.stss == nil || len(s.stss) < len(Zones(ing)) {
		return false, nil
	}
	var list corev1.ConfigMapList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(ing.Namespace), client.MatchingLabels(commonLabels(ing))); err != nil {
		return false, err
	}
	var names []string
	for _, cm := range list.Items {
		if metav1.IsControlledBy(&cm, ing) {
			names = append(names, cm.Name)
		}
	}
	for _, name := range StaleConfigMaps(names, configMapsUsed(s.pods, s.stss)) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ing.Namespace, Name: name}}
		if err := r.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("deleting the unused ConfigMap %s: %w", name, err)
		}
		logf.FromContext(ctx).Info("deleted a ConfigMap no pod uses any more", "name", name)
	}
	return false, nil
}

// RolloutMayRun says whether the rollout phase runs: not paused, the StatefulSets settled
// (unsettled == ""), and no storage growth in progress — unless the growth is blocked (a
// class without allowVolumeExpansion): the StatefulSets keep their claim size, and
// holding every later rollout until an admin changes the class would be a trap.
func RolloutMayRun(paused, resizePending, resizeBlocked bool, unsettled string) bool {
	return !paused && unsettled == "" && (!resizePending || resizeBlocked)
}

// StatefulSetsSettled is the one definition of settled children: "" when every
// StatefulSet the spec asks for exists, is not being deleted, has observed its latest spec
// and has the desired replicas; otherwise why not. The rollout waits for it, and
// Progressing is Applying until it holds.
func StatefulSetsSettled(ing *hearthv1.Ingester, stss map[string]*appsv1.StatefulSet) string {
	return statefulSetsSettled(ing, stss, nil)
}

// statefulSetsSettled is StatefulSetsSettled with the held StatefulSets (a shrink that
// waits) desired at the size they keep.
func statefulSetsSettled(ing *hearthv1.Ingester, stss map[string]*appsv1.StatefulSet, held map[string]int32) string {
	for _, z := range Zones(ing) {
		name := statefulSetName(ing, z.Name)
		sts := stss[name]
		if h, ok := held[name]; ok {
			z.Replicas = h
		}
		switch {
		case sts == nil:
			return "StatefulSet " + name + " does not exist yet"
		case !sts.DeletionTimestamp.IsZero():
			return "StatefulSet " + name + " is being deleted"
		case sts.Status.ObservedGeneration < sts.Generation:
			return "the StatefulSet controller has not observed the new spec of " + name
		case ptr.Deref(sts.Spec.Replicas, 1) != z.Replicas:
			return fmt.Sprintf("StatefulSet %s has %d replicas, %d desired", name, ptr.Deref(sts.Spec.Replicas, 1), z.Replicas)
		}
	}
	return ""
}

// report computes the status from what the phases saw and patches it once.
func (r *IngesterReconciler) report(ctx context.Context, s *reconcileScope, failed error) error {
	ing := s.ing
	degraded := s.degraded
	if failed != nil && degraded == nil {
		// Whatever phase failed, Degraded says so (not only apply).
		degraded = &problem{reason: PhaseFailedReason(s.phase), message: fmt.Sprintf("the %s phase failed (retried): %v", s.phase, failed)}
	}
	if degraded == nil {
		degraded = s.o.problem
	}
	if s.stss != nil {
		if degraded == nil {
			degraded = podProblem(s.pods)
		}
		r.observe(ing, s.stss, &s.o)
	}
	if degraded == nil {
		degraded = s.overrides
	}
	r.setDegraded(ing, s.orig, degraded)
	if failed == nil {
		ing.Status.ObservedGeneration = ing.Generation
		ing.Status.Selector = labels.SelectorFromSet(SelectorLabels(ing)).String()
	}
	if degraded != nil && s.result == "success" {
		s.result = "degraded"
	}
	r.reportMetrics(s)
	return r.patchStatus(ctx, s.orig, ing)
}

// requeueAfter is when to look again: soon while an orchestration is in progress,
// otherwise at the resync period.
func (r *IngesterReconciler) requeueAfter(s *reconcileScope) time.Duration {
	o := &s.o
	requeue := r.resync()
	if o.resizePending || o.resizing != "" || o.markersPending || (o.rollout != nil && o.rollout.Action != RolloutDone) || o.scaling != "" {
		requeue = min(requeue, 2*time.Second)
	}
	return requeue
}

// reportMetrics sets the per-Ingester gauges from the status just computed.
func (r *IngesterReconciler) reportMetrics(s *reconcileScope) {
	ing := s.ing
	ns, name := ing.Namespace, ing.Name
	st := &ing.Status
	replicasGauge.WithLabelValues(ns, name, "desired").Set(float64(ptr.Deref(ing.Spec.Replicas, 3)))
	replicasGauge.WithLabelValues(ns, name, "current").Set(float64(st.Replicas))
	replicasGauge.WithLabelValues(ns, name, "ready").Set(float64(st.ReadyReplicas))
	replicasGauge.WithLabelValues(ns, name, "updated").Set(float64(st.UpdatedReplicas))
	var outdated, updated, inFlight float64
	if ro := st.Rollout; ro != nil {
		outdated, updated, inFlight = float64(ro.Outdated), float64(ro.Updated), float64(len(ro.InFlight))
	} else {
		updated = float64(st.UpdatedReplicas)
	}
	rolloutPodsGauge.WithLabelValues(ns, name, "outdated").Set(outdated)
	rolloutPodsGauge.WithLabelValues(ns, name, "updated").Set(updated)
	rolloutPodsGauge.WithLabelValues(ns, name, "in_flight").Set(inFlight)
	var leaving, prepared float64
	if st.ScaleDown != nil {
		prepared = float64(len(st.ScaleDown.Prepared))
	}
	for _, p := range s.infos {
		for _, z := range Zones(ing) {
			if p.StatefulSet == statefulSetName(ing, z.Name) && p.Ordinal >= int(z.Replicas) {
				leaving++
			}
		}
	}
	scaleDownPodsGauge.WithLabelValues(ns, name, "leaving").Set(leaving)
	scaleDownPodsGauge.WithLabelValues(ns, name, "prepared").Set(prepared)
	if c := meta.FindStatusCondition(st.Conditions, hearthv1.ConditionProgressing); c != nil {
		switch {
		case c.Reason == ReasonComplete:
			lastSettledGauge.WithLabelValues(ns, name).Set(float64(time.Now().Unix()))
		case c.Status == metav1.ConditionTrue:
			// Unsettled since Progressing turned True: the last moment it was settled.
			lastSettledGauge.WithLabelValues(ns, name).Set(float64(c.LastTransitionTime.Unix()))
		}
	}
}

func (r *IngesterReconciler) resync() time.Duration {
	if r.Resync > 0 {
		return r.Resync
	}
	return 30 * time.Second
}

// problem is why an Ingester is Degraded.
type problem struct{ reason, message string }

// preflight finds missing inputs: the credentials Secret (and its keys) and the storage
// class. It returns nil when all is there.
func (r *IngesterReconciler) preflight(ctx context.Context, ing *hearthv1.Ingester) *problem {
	os := ing.Spec.ObjectStorage
	if keys := CredentialKeys(os); len(keys) > 0 {
		cs := os.CredentialsSecret
		sec := &corev1.Secret{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ing.Namespace, Name: cs.Name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			return &problem{ReasonSecretNotFound, fmt.Sprintf(
				"Secret %q named by spec.objectStorage.credentialsSecret does not exist in namespace %q: create it with the key(s) %s",
				cs.Name, ing.Namespace, strings.Join(keys, " and "))}
		case err != nil:
			return &problem{ReasonSecretError, fmt.Sprintf("reading Secret %q: %v", cs.Name, err)}
		}
		var missing []string
		for _, k := range keys {
			if _, ok := sec.Data[k]; !ok {
				if _, ok := sec.StringData[k]; !ok {
					missing = append(missing, k)
				}
			}
		}
		if len(missing) > 0 {
			return &problem{ReasonSecretKey, fmt.Sprintf("Secret %q has no key %s: add it or set spec.objectStorage.credentialsSecret's key names",
				cs.Name, strings.Join(missing, " or "))}
		}
	}
	if p := r.tlsPreflight(ctx, ing); p != nil {
		return p
	}
	if sc := ptr.Deref(ing.Spec.Storage.StorageClassName, ""); sc != "" {
		err := r.APIReader.Get(ctx, types.NamespacedName{Name: sc}, &storagev1.StorageClass{})
		switch {
		case apierrors.IsNotFound(err):
			return &problem{ReasonStorageClass, fmt.Sprintf(
				"StorageClass %q named by spec.storage.storageClassName does not exist: the ingesters' volumes cannot be provisioned; create it (the class cannot be changed on an existing Ingester)", sc)}
		case apierrors.IsForbidden(err):
			// A namespace-scoped install may not read StorageClasses (cluster-scoped):
			// the check is skipped, and a missing class shows as pending claims.
			logf.FromContext(ctx).V(1).Info("cannot read the StorageClass (no RBAC for it): not checked", "storageClass", sc, "err", err.Error())
		case err != nil:
			return &problem{ReasonStorageClass, fmt.Sprintf("reading StorageClass %q: %v", sc, err)}
		}
	}
	return nil
}

// podProblem reports pods that will not start without a fix: image pull failures, crash
// loops, container config errors, unschedulable pods.
func podProblem(pods []corev1.Pod) *problem {
	var failing, unschedulable []string
	for _, p := range pods {
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		if w := stuckWaiting(&p); w != nil {
			msg := fmt.Sprintf("%s: %s", p.Name, w.Reason)
			if w.Message != "" {
				msg += " (" + w.Message + ")"
			}
			failing = append(failing, msg)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				unschedulable = append(unschedulable, fmt.Sprintf("%s: %s", p.Name, c.Message))
			}
		}
	}
	sort.Strings(failing)
	sort.Strings(unschedulable)
	if len(failing) > 0 {
		return &problem{ReasonPodsNotStarting, "ingester pods cannot start: " + strings.Join(failing, "; ") + "; fix spec.image or the pods' inputs"}
	}
	if len(unschedulable) > 0 {
		return &problem{ReasonUnschedulable, "ingester pods cannot be scheduled: " + strings.Join(unschedulable, "; ")}
	}
	return nil
}

// apply server-side-applies one child under the operator's field manager and records
// an Event when it was created or changed.
func (r *IngesterReconciler) apply(ctx context.Context, ing *hearthv1.Ingester, obj client.Object) error {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	existing, _ := obj.DeepCopyObject().(client.Object)
	getErr := r.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	u, err := ToApply(obj)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		appliesTotal.WithLabelValues(kind, "error").Inc()
		r.Recorder.Eventf(ing, obj, corev1.EventTypeWarning, ReasonApplyFailed, "Apply", "applying %s %s: %v", kind, obj.GetName(), err)
		return fmt.Errorf("applying %s %s: %w", kind, obj.GetName(), err)
	}
	switch {
	case apierrors.IsNotFound(getErr):
		appliesTotal.WithLabelValues(kind, "created").Inc()
		r.Recorder.Eventf(ing, obj, corev1.EventTypeNormal, "Created", "Apply", "created %s %s for generation %d", kind, obj.GetName(), ing.Generation)
		logf.FromContext(ctx).Info("created child", "kind", kind, "name", obj.GetName())
	case getErr == nil && existing.GetResourceVersion() != u.GetResourceVersion():
		appliesTotal.WithLabelValues(kind, "updated").Inc()
		r.Recorder.Eventf(ing, obj, corev1.EventTypeNormal, "Updated", "Apply", "updated %s %s to generation %d", kind, obj.GetName(), ing.Generation)
		logf.FromContext(ctx).Info("updated child", "kind", kind, "name", obj.GetName())
	default:
		appliesTotal.WithLabelValues(kind, "unchanged").Inc()
	}
	return nil
}

// KeepClaimSizes copies the storage requests of live's claim templates into desired's and
// reports whether any differed (a storage resize is pending).
//
// It also keeps live's claim labels: claim templates are immutable, so a StatefulSet
// created with the older labels keeps them until it is recreated (its claims are
// relabelled instead, ClaimRelabel).
func KeepClaimSizes(desired, live *appsv1.StatefulSet) (pending bool) {
	for i := range desired.Spec.VolumeClaimTemplates {
		d := &desired.Spec.VolumeClaimTemplates[i]
		for _, l := range live.Spec.VolumeClaimTemplates {
			if l.Name != d.Name {
				continue
			}
			d.Labels = maps.Clone(l.Labels)
			want, have := d.Spec.Resources.Requests[corev1.ResourceStorage], l.Spec.Resources.Requests[corev1.ResourceStorage]
			if want.Cmp(have) != 0 {
				pending = true
				d.Spec.Resources.Requests = d.Spec.Resources.Requests.DeepCopy()
				d.Spec.Resources.Requests[corev1.ResourceStorage] = have
			}
		}
	}
	return pending
}

// observe fills the replica counts, the ring and the Available and Progressing
// conditions from the live StatefulSets (see StatefulSetsSettled) and the orchestration.
func (r *IngesterReconciler) observe(ing *hearthv1.Ingester, stss map[string]*appsv1.StatefulSet, o *orchestration) {
	st := &ing.Status
	desired := ptr.Deref(ing.Spec.Replicas, 3)
	var replicas, ready, updated int32
	for _, sts := range stss {
		replicas += sts.Status.Replicas
		ready += sts.Status.ReadyReplicas
		updated += sts.Status.UpdatedReplicas
	}
	st.Replicas, st.ReadyReplicas, st.UpdatedReplicas = replicas, ready, updated
	unsettled := StatefulSetsSettled(ing, stss)

	gen := ing.Generation
	switch {
	case desired == 0:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: hearthv1.ConditionAvailable, Status: metav1.ConditionFalse,
			Reason: ReasonScaledToZero, Message: "spec.replicas is 0", ObservedGeneration: gen})
	case ready >= desired:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: hearthv1.ConditionAvailable, Status: metav1.ConditionTrue,
			Reason: ReasonAllReady, Message: fmt.Sprintf("%d/%d ingesters ready", ready, desired), ObservedGeneration: gen})
	default:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: hearthv1.ConditionAvailable, Status: metav1.ConditionFalse,
			Reason: ReasonNotReady, Message: fmt.Sprintf("%d/%d ingesters ready", ready, desired), ObservedGeneration: gen})
	}

	progressing := metav1.Condition{Type: hearthv1.ConditionProgressing, Status: metav1.ConditionTrue, ObservedGeneration: gen}
	switch {
	case ing.Spec.Paused:
		progressing.Status, progressing.Reason, progressing.Message = metav1.ConditionFalse, ReasonPaused, "spec.paused is true: the operator changes nothing"
	case o.resizePending && o.storage != "":
		progressing.Reason, progressing.Message = ReasonResizingStorage, o.storage
	case o.resizePending:
		progressing.Reason, progressing.Message = ReasonResizePending, fmt.Sprintf(
			"spec.storage.size is %s: the volumes keep their size until they are expanded and the StatefulSets recreated", ing.Spec.Storage.Size.String())
	case o.resizing != "":
		progressing.Reason, progressing.Message = ReasonVolumesResizing, o.resizing
	case o.scaling != "":
		progressing.Reason, progressing.Message = ReasonScalingDown, o.scaling
	case unsettled != "":
		progressing.Reason, progressing.Message = ReasonApplying, "waiting for the StatefulSets: "+unsettled
	case replicas != desired:
		progressing.Reason, progressing.Message = ReasonScaling, fmt.Sprintf("%d ingester pods, %d desired", replicas, desired)
	case updated < desired || (o.rollout != nil && o.rollout.Outdated > 0):
		msg := fmt.Sprintf("%d/%d ingester pods run the current spec", updated, desired)
		if o.rollout != nil && o.rollout.Message != "" {
			msg += ": " + o.rollout.Message
		}
		progressing.Reason, progressing.Message = ReasonRollingOut, msg
	case ready < desired:
		progressing.Reason, progressing.Message = ReasonWaitingReady, fmt.Sprintf("%d/%d ingesters ready", ready, desired)
	default:
		progressing.Status, progressing.Reason, progressing.Message = metav1.ConditionFalse, ReasonComplete, fmt.Sprintf("%d ingesters run generation %d", desired, gen)
	}
	meta.SetStatusCondition(&st.Conditions, progressing)

	switch {
	case r.Ring == nil || desired == 0:
		st.Ring = hearthv1.RingStatus{}
	case o.ring == nil:
		st.Ring = hearthv1.RingStatus{Summary: "unknown"}
	default:
		st.Ring = RingStatusOf(o.ring, desired)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setDegraded sets the Degraded condition, with an Event and the metric when it changes.
func (r *IngesterReconciler) setDegraded(ing, orig *hearthv1.Ingester, p *problem) {
	before := meta.FindStatusCondition(orig.Status.Conditions, hearthv1.ConditionDegraded)
	c := metav1.Condition{Type: hearthv1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: ReasonAsExpected,
		Message: "no problem found", ObservedGeneration: ing.Generation}
	if p != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, p.reason, p.message
	}
	meta.SetStatusCondition(&ing.Status.Conditions, c)
	degradedGauge.DeletePartialMatch(map[string]string{"namespace": ing.Namespace, "name": ing.Name})
	if p != nil {
		degradedGauge.WithLabelValues(ing.Namespace, ing.Name, p.reason).Set(1)
		if before == nil || before.Status != metav1.ConditionTrue || before.Reason != p.reason {
			r.Recorder.Eventf(ing, nil, corev1.EventTypeWarning, p.reason, "Check", "%s", p.message)
		}
	} else if before != nil && before.Status == metav1.ConditionTrue {
		r.Recorder.Eventf(ing, nil, corev1.EventTypeNormal, "Recovered", "Check", "no longer degraded (was %s)", before.Reason)
	}
}

func (r *IngesterReconciler) patchStatus(ctx context.Context, orig, ing *hearthv1.Ingester) error {
	if equality.Semantic.DeepEqual(orig.Status, ing.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, ing, client.MergeFrom(orig)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("updating status: %w", err)
	}
	return nil
}

// podToIngester maps an ingester pod to its Ingester.
func podToIngester(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[LabelName] != appName || l[LabelComponent] != component || l[LabelInstance] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[LabelInstance]}}}
}

// ManagedSelector selects every object the operator renders; the manager's cache is
// restricted to it for the child kinds (see CacheByObject).
func ManagedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelName: appName, LabelManagedBy: managedBy})
}

// SetupWithManager registers the controller: Ingesters, their children and their pods.
func (r *IngesterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(FieldManager)
	}
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Pods == nil {
		r.Pods = HTTPPodClient{}
	}
	if r.Client == nil || r.APIReader == nil {
		return errors.New("controllers: no client")
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = 4
	}
	r.flushes.Timeout = r.FlushTimeout
	return ctrl.NewControllerManagedBy(mgr).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		For(&hearthv1.Ingester{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToIngester)).
		Named("ingester").
		Complete(r)
}
