package loadgen

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// OpenSessions opens n sessions on url (initialize and
// notifications/initialized each, at most 16 at a time) and returns them
// open and idle: what a gateway holds for clients that connected and went
// quiet, whose memory cost DESIGN §11 budgets. On any failure it closes the
// sessions it opened and returns the errors.
func OpenSessions(ctx context.Context, client *http.Client, url, key string, n int) ([]*Session, error) {
	if n < 1 || n > MaxSessions {
		return nil, errors.New("session count out of range")
	}
	sessions := make([]*Session, n)
	errs := make([]error, n)
	gate := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			gate <- struct{}{}
			defer func() { <-gate }()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			s := NewSession(client, url, key)
			if errs[i] = s.Initialize(cctx); errs[i] == nil {
				sessions[i] = s
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		CloseSessions(context.WithoutCancel(ctx), sessions)
		return nil, err
	}
	return sessions, nil
}

// CloseSessions ends the given sessions (nil entries are skipped), at most
// 16 at a time, and returns the errors.
func CloseSessions(ctx context.Context, sessions []*Session) error {
	errs := make([]error, len(sessions))
	gate := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, s := range sessions {
		if s == nil {
			continue
		}
		wg.Go(func() {
			gate <- struct{}{}
			defer func() { <-gate }()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			errs[i] = s.Close(cctx)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
