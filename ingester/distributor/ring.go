package distributor

// Instance is one ingester of the ring.
type Instance struct {
	ID   string
	Addr string // host:httpPort
	Zone string // "" unless zone-aware replication is on
}

// ReplicationSet is a set of instances and how many of them may fail. It
// mirrors dskit's ring.ReplicationSet: an adapter copies Instances (Id, Addr,
// Zone), MaxErrors and MaxUnavailableZones.
type ReplicationSet struct {
	Instances []Instance
	// MaxErrors is how many instances may fail (not zone-aware).
	MaxErrors int
	// MaxUnavailableZones, when > 0, switches to zone semantics: the
	// operation succeeds while the failed instances span at most this many zones.
	MaxUnavailableZones int
}

// Tolerates reports whether the set still succeeds with these instances failed.
func (rs ReplicationSet) Tolerates(failed []Instance) bool {
	if rs.MaxUnavailableZones > 0 {
		zones := map[string]struct{}{}
		for _, in := range failed {
			zones[in.Zone] = struct{}{}
		}
		return len(zones) <= rs.MaxUnavailableZones
	}
	return len(failed) <= rs.MaxErrors
}

// Ring is what the distributor and the remote querier need from the ring.
type Ring interface {
	// ReplicationSet returns the owners of a series token with dskit's
	// ring.Write semantics: it extends past LEAVING owners and leaves out
	// UNHEALTHY ones (lowering MaxErrors), zone-aware when configured.
	ReplicationSet(token uint32) (ReplicationSet, error)
	// ReadSet returns every instance that may hold data for reads, with the
	// failures a read tolerates (dskit's ring.Read: up to RF/2 unhealthy).
	ReadSet() (ReplicationSet, error)
}

// Quorum is the number of acknowledgements a set of n replicas needs: n/2+1.
func Quorum(n int) int { return n/2 + 1 }
