package ring

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/ingester/model"
)

// ReplicationSet is the set of ingesters a write of the series hashed to key
// goes to: dskit's ring.Write operation, so the set extends past LEAVING,
// JOINING and PENDING owners and leaves out UNHEALTHY ones (whose heartbeat
// is older than the timeout); with zone awareness, one owner per zone.
// MaxErrors is how many of the returned instances may fail with the write
// still reaching a quorum. The replication factor is clamped to the number of
// members of the ring, so a single ingester with RF 3 accepts writes; members
// that are down but still in the ring count, so quorum errors stay errors.
func (r *Ring) ReplicationSet(key uint32) (dskitring.ReplicationSet, error) {
	return r.client.Get(key, dskitring.Write, nil, nil, nil)
}

// ReadSet is every instance a query must ask: all members healthy for
// dskit's ring.Read (ACTIVE, LEAVING, PENDING with a fresh heartbeat).
// MaxErrors (MaxUnavailableZones with zone awareness) says how many of them
// may fail: up to RF/2 members (zones) may be unhealthy, more is
// ring.ErrTooManyUnhealthyInstances. The replication factor is clamped to the
// ring size, as for writes.
func (r *Ring) ReadSet() (dskitring.ReplicationSet, error) {
	rf := r.cfg.Ring.ReplicationFactor
	n := r.client.InstancesCount()
	if r.cfg.Ring.ZoneAwarenessEnabled || n >= rf {
		// dskit already clamps to the number of zones.
		return r.client.GetReplicationSetForOperation(dskitring.Read)
	}
	if n == 0 {
		return dskitring.ReplicationSet{}, dskitring.ErrEmptyRing
	}
	all, err := r.client.GetAllHealthy(dskitring.Read)
	if err != nil {
		return dskitring.ReplicationSet{}, err
	}
	// A ring smaller than RF: every member owns every series.
	required := n - n/2
	if len(all.Instances) < required {
		return dskitring.ReplicationSet{}, dskitring.ErrTooManyUnhealthyInstances
	}
	all.MaxErrors = len(all.Instances) - required
	return all, nil
}

// TokenFor is the ring key of a series, the one function that places a series
// on the ring (the distributor's writes, the tests' rings): a stable 32-bit hash (xxhash64 folded)
// of the tenant and the series labels sorted by name. labels is not modified.
func TokenFor(tenant string, labels model.Labels) uint32 {
	if !sort.SliceIsSorted(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name }) {
		labels = labels.Clone().Sort()
	}
	h := xxhash.New()
	_, _ = h.WriteString(tenant)
	_, _ = h.Write(sep)
	for _, l := range labels {
		_, _ = h.WriteString(l.Name)
		_, _ = h.Write(sep)
		_, _ = h.WriteString(l.Value)
		_, _ = h.Write(sep)
	}
	s := h.Sum64()
	return uint32(s>>32) ^ uint32(s)
}

var sep = []byte{0xff}

// quorumStrategy is dskit's default replication strategy with two changes: the
// quorum is a majority of the replication factor (clamped to the ring size, so
// a single ingester with RF 3 accepts writes), never of the extended set; and
// with zone awareness it is counted in zones (a majority of the zones the key's
// replicas span), so that a zone whose instances are all LEAVING, which makes
// ring.Write extend the set inside that zone, does not raise the quorum above
// what the other zones can give.
type quorumStrategy struct{}

func (quorumStrategy) Filter(instances []dskitring.InstanceDesc, op dskitring.Operation, replicationFactor int, heartbeatTimeout time.Duration, zoneAwarenessEnabled bool) ([]dskitring.InstanceDesc, int, error) {
	now := time.Now()
	var unhealthy []string
	healthy := instances[:0:0]
	healthyZones := map[string]struct{}{}
	zones := map[string]struct{}{}
	for _, in := range instances {
		zones[in.Zone] = struct{}{}
		if in.IsHealthy(op, heartbeatTimeout, now) {
			healthy = append(healthy, in)
			healthyZones[in.Zone] = struct{}{}
		} else {
			unhealthy = append(unhealthy, in.Addr)
		}
	}
	var minSuccess, found int
	across := ""
	if zoneAwarenessEnabled {
		minSuccess, found, across = len(zones)/2+1, len(healthyZones), " across different availability zones"
	} else {
		// ring.Write extends the set past LEAVING owners, and dskit's default strategy
		// would raise the quorum with it (a majority of 5 when 3 of 5 members leave in a
		// scale-down, which the 2 ACTIVE owners can never give). The extension only
		// replaces owners that take no writes, so RF/2+1 of the ACTIVE owners is still
		// a majority of the series' replicas.
		rf := min(replicationFactor, len(instances)) // a ring smaller than RF
		minSuccess, found = rf/2+1, len(healthy)
	}
	if found < minSuccess {
		msg := ""
		if len(unhealthy) > 0 {
			msg = " - unhealthy instances: " + strings.Join(unhealthy, ",")
		}
		return nil, 0, fmt.Errorf("at least %d live replicas required%s, could only find %d%s", minSuccess, across, found, msg)
	}
	return healthy, len(healthy) - minSuccess, nil
}

// SupportsExpandedReplication is false: like dskit's default strategy, one
// instance per zone is assumed with zone awareness.
func (quorumStrategy) SupportsExpandedReplication() bool { return false }

// ownerOp walks past members that are not ACTIVE: they own nothing for it.
var ownerOp = dskitring.NewOp([]dskitring.InstanceState{dskitring.ACTIVE}, func(s dskitring.InstanceState) bool { return s != dskitring.ACTIVE })

// Owner is the one member that owns key for work that needs a single owner
// (a compaction job): the first ACTIVE member with a fresh heartbeat clockwise
// from the key. Members that see the ring alike agree on it; during a ring
// change two may briefly both think they own a key.
func (r *Ring) Owner(key uint32) (string, error) { return ownerIn(r.client, key) }

// ShardOwner is Owner among the tenant's compaction shard (see ShardOf).
func (r *Ring) ShardOwner(tenant string, size int, key uint32) (string, error) {
	return ownerIn(ShardOf(r.client, tenant, size), key)
}

// InShard reports whether this instance is one of the tenant's compaction
// shard (see ShardOf): outside it, it owns none of the tenant's work.
func (r *Ring) InShard(tenant string, size int) bool {
	return ShardOf(r.client, tenant, size).HasInstance(r.InstanceID())
}

// ShardOf is the tenant's compaction shard: the size members dskit's shuffle
// sharding picks for the tenant (Mimir's -compactor.compactor-tenant-shard-size),
// the same on every member that sees the same ring; size <= 0, or at least
// the ring's size, is the whole ring. Members in any state are picked;
// ShardOwner walks past those not ACTIVE within the shard.
func ShardOf(rr dskitring.ReadRing, tenant string, size int) dskitring.ReadRing {
	if size <= 0 || size >= rr.InstancesCount() {
		return rr
	}
	return rr.ShuffleShard(tenant, size)
}

// ShardOwnerIn is ShardOwner over any ring (tests and simulations build
// rings of many members without processes).
func ShardOwnerIn(rr dskitring.ReadRing, tenant string, size int, key uint32) (string, error) {
	return ownerIn(ShardOf(rr, tenant, size), key)
}

func ownerIn(rr dskitring.ReadRing, key uint32) (string, error) {
	rs, err := rr.Get(key, ownerOp, nil, nil, nil)
	if err != nil {
		return "", err
	}
	if len(rs.Instances) == 0 {
		return "", dskitring.ErrEmptyRing
	}
	return rs.Instances[0].Id, nil
}
