package store

import "flag"

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("bench", flag.ContinueOnError) }
