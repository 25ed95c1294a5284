package metrics

import (
	"context"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// timedStore is a store.Store whose durable writes are timed.
type timedStore struct {
	store.Store
	deliver, append       *Histogram
	deliverErr, appendErr *Counter
}

// TimeStore returns st with Deliver and Append timed into
// posthorn_store_duration_seconds (and their errors counted); every other
// method is st's. The server installs it in front of the store it opens, so
// that no caller has to time its own calls.
//
// The result implements store.Store only: optional interfaces of st
// (store.Importer) are not passed through; `posthorn import` uses the store
// directly.
func TimeStore(st store.Store) store.Store {
	return &timedStore{
		Store:      st,
		deliver:    storeDuration.With("deliver"),
		append:     storeDuration.With("append"),
		deliverErr: storeErrors.With("deliver"),
		appendErr:  storeErrors.With("append"),
	}
}

func (t *timedStore) Deliver(ctx context.Context, d *store.Delivery) (*store.DeliveryResult, error) {
	start := time.Now()
	res, err := t.Store.Deliver(ctx, d)
	t.deliver.Since(start)
	if err != nil {
		t.deliverErr.Inc()
	}
	return res, err
}

func (t *timedStore) Append(ctx context.Context, mailboxID int64, body store.Body, meta []byte, flags []string, date time.Time) (store.MessageInfo, error) {
	start := time.Now()
	info, err := t.Store.Append(ctx, mailboxID, body, meta, flags, date)
	t.append.Since(start)
	if err != nil {
		t.appendErr.Inc()
	}
	return info, err
}
