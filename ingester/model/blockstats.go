package model

// BlockStats is what a block's meta says about it, without reading it: its
// time range (Unix nanoseconds, inclusive), counts and file sizes. Block
// sources list them so that the querier can estimate what a query would read.
type BlockStats struct {
	MinTime, MaxTime          int64
	Series, Profiles, Samples int64
	IndexBytes, ProfileBytes  int64
	SymbolBytes               int64
}
