package block

import (
	"context"

	"github.com/hearth-dev/hearth/ingester/model"
)

// BlockStats lists the tenant's blocks as their metas describe them (what
// querier.AnalyzeQuery estimates from), with the same caching as Blocks.
func (s *BucketSource) BlockStats(ctx context.Context, tenant string) ([]model.BlockStats, error) {
	metas, err := s.Blocks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]model.BlockStats, len(metas))
	for i, m := range metas {
		out[i] = model.BlockStats{
			MinTime: m.MinTime, MaxTime: m.MaxTime,
			Series: m.Stats.Series, Profiles: m.Stats.Profiles, Samples: m.Stats.Samples,
			IndexBytes: max(m.FileSize(IndexFile), 0), ProfileBytes: max(m.FileSize(ProfilesFile), 0), SymbolBytes: max(m.FileSize(SymbolsFile), 0),
		}
	}
	return out, nil
}
