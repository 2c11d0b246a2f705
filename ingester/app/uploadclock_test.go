package app

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestUploadClockRemembersLocalBlocks (issue 21 finding 5): uploads were
// forgotten after an hour, so a local block uploaded 1-6 h ago (still on disk
// under the 6h local retention) was shipped to every peer query as "not in
// the bucket yet".
func TestUploadClockRemembersLocalBlocks(t *testing.T) {
	var u uploadClock
	old := ulid.Make()
	u.set(old, time.Now().Add(-3*time.Hour), uploadMemory(6*time.Hour))
	fresh := ulid.Make()
	u.set(fresh, time.Now(), uploadMemory(6*time.Hour))
	if u.recent(old, time.Minute) {
		t.Fatal("a block uploaded 3h ago is served to peers as not in the bucket")
	}
	if !u.recent(fresh, time.Minute) {
		t.Fatal("a block uploaded now must still be served to peers")
	}
	if uploadMemory(0) != 7*time.Hour || uploadMemory(-1) != 0 {
		t.Fatalf("uploadMemory(0) = %s, uploadMemory(-1) = %s", uploadMemory(0), uploadMemory(-1))
	}
}
