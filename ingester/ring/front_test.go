package ring

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestGossipAcrossATLSSwitch runs the memberlist side of turning TLS on: a plain node
// and a switch-step node (TLS served next to plain, dialling plain) gossip both ways
// and see each other ACTIVE; then the plain node goes and a target node (TLS, dialling
// TLS, accepting plain) joins the switch-step node: again both see both. Without the
// front, a TLS transport refuses plain gossip and a plain one TLS gossip.
func TestGossipAcrossATLSSwitch(t *testing.T) {
	ca := testutil.NewCA(t, "ml-ca")
	const name = "hearth-headless.test.svc"
	tlsOn := func(step bool) func(*MemberlistConfig) {
		return func(m *MemberlistConfig) {
			f := testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, "node", []string{name}), ca.PEM)
			m.TLSEnabled, m.TLSAcceptPlain, m.TLSDialPlain = true, true, step
			m.TLS.CertPath, m.TLS.KeyPath, m.TLS.CAPath, m.TLS.ServerName = f.Cert, f.Key, f.CA, name
		}
	}
	plain := newNode(t, "plain", "")
	step := newNode(t, "step", "")
	step.ml = tlsOn(true)
	plain.rf, step.rf = 1, 1
	step.join = []string{plain.mlAddr()}
	plain.start(t)
	step.start(t)
	waitFor(t, 20*time.Second, "plain and switch-step nodes see each other", seesStates([]*node{plain, step}, map[string]string{"plain": "ACTIVE", "step": "ACTIVE"}))

	plain.stop(t)
	target := newNode(t, "target", "")
	target.ml = tlsOn(false)
	target.rf = 1
	target.join = []string{step.mlAddr()}
	target.start(t)
	waitFor(t, 20*time.Second, "switch-step and target nodes see each other", func() error {
		for _, o := range []*node{step, target} {
			got, err := states(o)
			if err != nil {
				return err
			}
			if got["step"] != "ACTIVE" || got["target"] != "ACTIVE" {
				return fmt.Errorf("%s sees %v", o.id, got)
			}
		}
		return nil
	})
}
