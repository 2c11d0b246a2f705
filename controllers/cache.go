package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheByObject restricts the manager's cache to the objects the operator renders (and
// their pods), so it neither holds nor needs to see the cluster's other Services,
// ConfigMaps, StatefulSets or Pods.
func CacheByObject() map[client.Object]cache.ByObject {
	sel := ManagedSelector()
	return map[client.Object]cache.ByObject{
		&appsv1.StatefulSet{}:           {Label: sel},
		&corev1.Service{}:               {Label: sel},
		&corev1.ConfigMap{}:             {Label: sel},
		&corev1.ServiceAccount{}:        {Label: sel},
		&policyv1.PodDisruptionBudget{}: {Label: sel},
		&networkingv1.NetworkPolicy{}:   {Label: sel},
		&corev1.Pod{}:                   {Label: sel},
	}
}
