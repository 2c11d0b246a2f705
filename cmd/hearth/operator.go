package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/controllers"
)

func init() {
	register("operator", "run the Kubernetes operator that reconciles Ingester resources", runOperator)
}

// runOperator runs the controller-runtime manager until ctx is done.
func runOperator(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	metricsAddr := fs.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (\"0\" disables it)")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of /healthz and /readyz (\"0\" disables them)")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader so that only one replica reconciles (enable when running more than one)")
	leaderElectionNamespace := fs.String("leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	leaderElectionID := fs.String("leader-election-id", "hearth-operator.hearth.dev", "name of the leader election Lease")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)")
	watchNamespace := fs.String("watch-namespace", "", "reconcile only Ingesters in this namespace (default: all namespaces)")
	resync := fs.Duration("resync", 0, "how often each Ingester is looked at without an event (default 30s)")
	maxConcurrent := fs.Int("max-concurrent-reconciles", 4, "how many Ingesters are reconciled at once")
	leaseDuration := fs.Duration("leader-elect-lease-duration", 15*time.Second, "how long a standby waits before it takes over a leader that stopped renewing")
	renewDeadline := fs.Duration("leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it gives up leading (and exits)")
	retryPeriod := fs.Duration("leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	flushTimeout := fs.Duration("flush-timeout", 5*time.Minute, "bound of one pod's flush when its Ingester is deleted (it runs in the background)")
	operatorNamespace := fs.String("operator-namespace", os.Getenv("POD_NAMESPACE"), "the operator's own namespace: the Ingesters' NetworkPolicies admit its pods to the internal port (default: $POD_NAMESPACE, then the service account's namespace; none: operator pods of any namespace)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(hearthv1.AddToScheme(scheme))

	cacheOpts := cache.Options{ByObject: controllers.CacheByObject()}
	if *watchNamespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{*watchNamespace: {}}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:        *probeAddr,
		LeaderElection:                *leaderElect,
		LeaderElectionID:              *leaderElectionID,
		LeaderElectionNamespace:       *leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 leaseDuration,
		RenewDeadline:                 renewDeadline,
		RetryPeriod:                   retryPeriod,
		Cache:                         cacheOpts,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if *maxConcurrent < 1 {
		return fmt.Errorf("-max-concurrent-reconciles must be at least 1, got %d", *maxConcurrent)
	}
	if *operatorNamespace == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			*operatorNamespace = strings.TrimSpace(string(b))
		}
	}
	controllers.OperatorNamespace = *operatorNamespace
	// Admin calls go to each pod's internal port, with the client certificate of the
	// Ingester's spec.tls Secret when it has one.
	targets := &controllers.SecurePodTargets{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	r := &controllers.IngesterReconciler{Ring: controllers.HTTPRingReader{Target: targets.Target}, Resync: *resync,
		MaxConcurrentReconciles: *maxConcurrent, FlushTimeout: *flushTimeout,
		Pods: controllers.HTTPPodClient{FlushTimeout: *flushTimeout, Target: targets.Target}}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Ingester controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("operator").Info("starting", "version", version, "leaderElection", *leaderElect, "maxConcurrentReconciles", *maxConcurrent)
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig() // $KUBECONFIG, in-cluster, ~/.kube/config
}
