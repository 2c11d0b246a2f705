package querier

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// TopRow is one function of a top-N table.
type TopRow struct {
	Name      string
	Flat, Cum int64
}

// Top ranks the functions of a single-sample-type profile by self value,
// as `go tool pprof -top` does; total is the profile's sum.
func Top(p *googlev1.Profile, n int) (rows []TopRow, total int64) {
	fn := map[uint64]string{}
	for _, f := range p.Function {
		if f.Name >= 0 && f.Name < int64(len(p.StringTable)) {
			fn[f.Id] = p.StringTable[f.Name]
		}
	}
	locs := map[uint64]*googlev1.Location{}
	for _, l := range p.Location {
		locs[l.Id] = l
	}
	flat, cum := map[string]int64{}, map[string]int64{}
	seen := map[string]bool{}
	for _, s := range p.Sample {
		if len(s.Value) == 0 {
			continue
		}
		v := s.Value[0]
		total += v
		clear(seen)
		first := true
		for _, id := range s.LocationId {
			l := locs[id]
			if l == nil {
				continue
			}
			names := make([]string, 0, len(l.Line))
			for _, ln := range l.Line {
				names = append(names, fn[ln.FunctionId])
			}
			if len(names) == 0 {
				names = append(names, fmt.Sprintf("0x%x", l.Address))
			}
			for _, name := range names {
				if first {
					flat[name] += v
					first = false
				}
				if !seen[name] {
					cum[name] += v
					seen[name] = true
				}
			}
		}
	}
	for name, c := range cum {
		rows = append(rows, TopRow{Name: name, Flat: flat[name], Cum: c})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Flat != rows[j].Flat {
			return rows[i].Flat > rows[j].Flat
		}
		if rows[i].Cum != rows[j].Cum {
			return rows[i].Cum > rows[j].Cum
		}
		return rows[i].Name < rows[j].Name
	})
	if n > 0 && len(rows) > n {
		rows = rows[:n]
	}
	return rows, total
}

// FormatValue renders a value in its unit (nanoseconds as time, bytes in MiB).
func FormatValue(v int64, unit string) string {
	switch unit {
	case "nanoseconds":
		return time.Duration(v).Round(time.Millisecond).String()
	case "bytes":
		return fmt.Sprintf("%.2fMiB", float64(v)/(1<<20))
	}
	return fmt.Sprint(v)
}

// WriteTop prints a top-N table.
func WriteTop(w io.Writer, rows []TopRow, total int64, unit string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "flat\tflat%%\tcum\tcum%%\t\t\n")
	pct := func(v int64) string {
		if total == 0 {
			return "0.0%"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(v)/float64(total))
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t  \t%s\n", FormatValue(r.Flat, unit), pct(r.Flat), FormatValue(r.Cum, unit), pct(r.Cum), r.Name)
	}
	return tw.Flush()
}
