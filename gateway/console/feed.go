package console

import (
	"net/netip"
	"sync"
	"time"
)

// Decision is one flow decision as the audit log recorded it.
type Decision struct {
	Time     time.Time
	Verdict  string // "allow", "deny" or "audit" (a would-be denial let through)
	Identity string // "" when the source is no identity
	Service  string // "" when the destination is no service
	Src, Dst netip.AddrPort
	Proto    string
	Rule     string
	Reason   string
}

// Feed keeps the most recent decisions and hands new ones to the pages
// watching. Publish never blocks: a watcher too slow to keep up misses
// decisions rather than slowing flows down.
type Feed struct {
	mu     sync.Mutex
	recent []Decision // a ring of cap(recent), oldest at next once full
	next   int
	counts map[string]uint64 // by verdict, since start
	subs   map[chan Decision]struct{}
}

// NewFeed keeps the last size decisions.
func NewFeed(size int) *Feed {
	return &Feed{recent: make([]Decision, 0, size), counts: map[string]uint64{}, subs: map[chan Decision]struct{}{}}
}

// Publish records d and passes it to every watcher with room for it.
func (f *Feed) Publish(d Decision) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recent) < cap(f.recent) {
		f.recent = append(f.recent, d)
	} else if cap(f.recent) > 0 {
		f.recent[f.next] = d
		f.next = (f.next + 1) % cap(f.recent)
	}
	f.counts[d.Verdict]++
	for ch := range f.subs {
		select {
		case ch <- d:
		default:
		}
	}
}

// Recent returns the kept decisions, newest first.
func (f *Feed) Recent() []Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Decision, 0, len(f.recent))
	for i := range len(f.recent) {
		out = append(out, f.recent[(f.next+len(f.recent)-1-i)%len(f.recent)])
	}
	return out
}

// Counts returns the number of decisions by verdict since start.
func (f *Feed) Counts() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

// Subscribe returns a channel of new decisions and the function that
// ends the subscription.
func (f *Feed) Subscribe() (<-chan Decision, func()) {
	ch := make(chan Decision, 64)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}
