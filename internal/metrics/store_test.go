package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/store/storetest"
)

func openTimed(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := TimeStore(st)
	t.Cleanup(func() { ts.Close() })
	return ts
}

// The wrapper is a store: the store's conformance suite passes through it.
func TestTimeStoreConformance(t *testing.T) {
	storetest.Run(t, openTimed)
}

// Each Deliver and Append is observed once, and a failed one is counted as
// an error too.
func TestTimeStoreObserves(t *testing.T) {
	ctx := context.Background()
	st := openTimed(t)
	deliver, appendH := storeDuration.With("deliver"), storeDuration.With("append")
	deliverErr, appendErr := storeErrors.With("deliver"), storeErrors.With("append")
	d0, a0, de0, ae0 := deliver.Count(), appendH.Count(), deliverErr.Value(), appendErr.Value()

	acct, err := st.CreateAccount(ctx, "pp", "x")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := st.GetMailbox(ctx, acct.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, inbox.ID, storetest.Msg("one"), nil, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, 999999, storetest.Msg("nowhere"), nil, nil, time.Now()); err == nil {
		t.Fatal("append to a missing mailbox succeeded")
	}
	if _, err := st.Deliver(ctx, &store.Delivery{Body: storetest.Msg("two"), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil {
		t.Fatal(err)
	}
	if got := deliver.Count() - d0; got != 1 {
		t.Errorf("%d deliveries observed, want 1", got)
	}
	if got := appendH.Count() - a0; got != 2 {
		t.Errorf("%d appends observed, want 2", got)
	}
	if got := appendErr.Value() - ae0; got != 1 {
		t.Errorf("%d append errors, want 1", got)
	}
	if got := deliverErr.Value() - de0; got != 0 {
		t.Errorf("%d deliver errors, want 0", got)
	}
}
