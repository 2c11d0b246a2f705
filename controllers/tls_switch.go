package controllers

import (
	corev1 "k8s.io/api/core/v1"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// Turning spec.tls on or off on a running Ingester is two rollouts (docs/security.md,
// "Turning TLS on or off"). Plain pods cannot dial TLS-only pods and the other way
// round, so the operator first rolls every pod to the switch step: TLS with the Secret,
// but the internal port also accepting plain connections, the ingester client falling
// back to plain for a peer that answers in plain text, memberlist accepting both and
// dialling plain. A switch-step pod reaches and is reached by both the old and the
// target revision. Once no pod serves the old way any more, it renders the target:
// strict TLS (or plain), the second rollout. The plain-accepting step exists only while
// some pod needs it.

// AnnotationTLSSwitch on a pod (template) marks the switch step.
const AnnotationTLSSwitch = "hearth.dev/tls-switch"

// tlsSwitchValue is the annotation's value.
const tlsSwitchValue = "accept-plain"

// PodServing is how one pod serves its internal port, from its own spec.
type PodServing struct {
	Secret     string // "": plain HTTP
	ServerName string
	Switching  bool // the switch step: TLS and plain
}

// PodServingOf reads how a pod serves (PodTLS, and the switch step's annotation).
func PodServingOf(pod *corev1.Pod, fallbackServerName string) PodServing {
	secret, name := PodTLS(pod, fallbackServerName)
	return PodServing{Secret: secret, ServerName: name, Switching: secret != "" && pod.Annotations[AnnotationTLSSwitch] == tlsSwitchValue}
}

// TLSStep is how the next rendering serves the internal port: Switching with Secret
// and ServerName, or the spec's way (Switching false).
type TLSStep struct {
	Switching  bool
	Secret     string
	ServerName string
}

// DecideTLSStep says whether the next rendering is the switch step. wantTLS is whether
// the spec asks for TLS (secret and serverName its Secret and name). The switch step is
// needed while some pod serves the opposite way of the spec, without the switch step:
// plain pods when TLS is wanted, TLS-only pods when plain is. Switch-step pods talk with
// both, so they never hold the target back. Its Secret is the spec's when turning TLS
// on, else the one the TLS pods mount (their certificate is what they still present).
// A change of Secret alone is no switch (both revisions serve TLS; a new CA must be
// trusted by both first: docs/security.md).
func DecideTLSStep(wantTLS bool, secret, serverName string, pods []PodServing) TLSStep {
	for _, p := range pods {
		if p.Switching {
			continue
		}
		if wantTLS && p.Secret == "" {
			return TLSStep{Switching: true, Secret: secret, ServerName: serverName}
		}
		if !wantTLS && p.Secret != "" {
			return TLSStep{Switching: true, Secret: p.Secret, ServerName: p.ServerName}
		}
	}
	return TLSStep{}
}

// tlsStepOf decides the step for an Ingester and its live pods.
func tlsStepOf(ing *hearthv1.Ingester, pods []corev1.Pod) TLSStep {
	fallback := TLSServerName(ing)
	serving := make([]PodServing, 0, len(pods))
	for i := range pods {
		if !ServesInternalPort(&pods[i]) {
			continue // a v0.1.0 pod: the operator calls it on its public port
		}
		serving = append(serving, PodServingOf(&pods[i], fallback))
	}
	secret := ""
	if ing.Spec.TLS != nil {
		secret = ing.Spec.TLS.SecretName
	}
	return DecideTLSStep(ing.Spec.TLS != nil, secret, TLSServerName(ing), serving)
}

// withTLSStep is the Ingester as the next rendering sees it: for the switch step, a copy
// whose spec.tls names the step's Secret and whose annotation marks the step. The
// annotation is the renderer's input only; the reconciler strips any user-set one.
func withTLSStep(ing *hearthv1.Ingester, step TLSStep) *hearthv1.Ingester {
	_, marked := ing.Annotations[AnnotationTLSSwitch]
	if !step.Switching && !marked {
		return ing
	}
	out := ing.DeepCopy()
	delete(out.Annotations, AnnotationTLSSwitch)
	if !step.Switching {
		return out
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationTLSSwitch] = tlsSwitchValue
	public := out.Spec.TLS != nil && out.Spec.TLS.Public
	out.Spec.TLS = &hearthv1.TLSSpec{SecretName: step.Secret, ServerName: step.ServerName, Public: public}
	return out
}

// tlsSwitching reports whether a rendering is the switch step.
func tlsSwitching(ing *hearthv1.Ingester) bool {
	return ing.Spec.TLS != nil && ing.Annotations[AnnotationTLSSwitch] == tlsSwitchValue
}
