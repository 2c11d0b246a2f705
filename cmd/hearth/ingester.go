package main

import "github.com/hearth-dev/hearth/ingester/app"

func init() {
	register("ingester", "run the ingester: push, store, query (a ring member in a cluster)", app.Main)
}
