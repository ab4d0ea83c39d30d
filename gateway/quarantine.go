package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Quarantine cuts one identity off at once, without a policy change: its
// new flows are denied (reason quarantined), its live flows are revoked,
// its DNS answers only the services of the policy's [quarantine] allow.
// The set is the gateway's state, not the policy's: it is kept in
// quarantine.json in the state directory (written atomically, read at
// start, so it survives restarts and reloads, and a policy deploy cannot
// release anyone), and it travels over the site links, so that every
// gateway that serves the identity across sites refuses its relayed flows
// on its own decision (quarantine_link.go).
//
// Every change is a record: an identity's latest quarantine or release,
// with when, by whom and at which site. A release is kept as a record too
// (Active false), so that it travels like a quarantine and a gateway that
// was down cannot bring a released quarantine back. Between gateways the
// later record wins (At, then the site name); a gateway never stamps a
// change earlier than the record it replaces, so its own clock running
// behind cannot undo a change it has seen.

// quarantineFile is the state file in the state directory.
const quarantineFile = "quarantine.json"

// QuarantineEntry is one identity's latest quarantine or release.
type QuarantineEntry struct {
	Identity string `json:"identity"`
	// Active is true while the identity is quarantined; a release keeps
	// the record with Active false.
	Active bool   `json:"active"`
	Reason string `json:"reason"`
	// By is who asked: the admin socket caller's uid and process, as the
	// kernel reports them (SO_PEERCRED).
	By string `json:"by"`
	// Site is the gateway the change was made at.
	Site string `json:"site"`
	// Since is when the identity was quarantined; for a release, when the
	// quarantine it ended began.
	Since time.Time `json:"since"`
	// At is when this record was made (the quarantine, or the release).
	At time.Time `json:"at"`
	// InPolicy is false for an identity the running policy does not have
	// (a reload removed it): the record stays, and applies again if the
	// identity comes back. Not stored.
	InPolicy bool `json:"in_policy"`
}

// newer reports whether e replaces old: the later change wins, ties go to
// the greater site name, so every gateway picks the same record.
func (e QuarantineEntry) newer(old QuarantineEntry) bool {
	if c := e.At.Compare(old.At); c != 0 {
		return c > 0
	}
	return e.Site > old.Site
}

// storedEntry is a record as quarantine.json keeps it: without
// in_policy, which describes the running policy, not the record (it read
// "false" for every identity).
type storedEntry struct {
	QuarantineEntry
	InPolicy bool `json:"in_policy,omitempty"`
}

// quarantineState is quarantine.json (read as written by
// saveQuarantineLocked).
type quarantineState struct {
	Entries []QuarantineEntry `json:"entries"`
}

// quarantines is the gateway's set. The flow path reads only active, an
// atomic pointer to the quarantined names, so a gateway with nobody in
// quarantine pays one load per decision.
type quarantines struct {
	active atomic.Pointer[map[string]bool]

	// mu serialises changes (and their writes to the state file) and
	// guards entries and hash.
	mu      sync.Mutex
	entries map[string]QuarantineEntry
	hash    string // of entries, for the site links
}

// has reports whether identity name is quarantined.
func (q *quarantines) has(name string) bool {
	m := q.active.Load()
	return m != nil && (*m)[name]
}

// installLocked puts entries in force.
func (q *quarantines) installLocked(entries map[string]QuarantineEntry) {
	active := make(map[string]bool)
	for name, e := range entries {
		if e.Active {
			active[name] = true
		}
	}
	q.entries = entries
	q.hash = hashEntries(entries)
	q.active.Store(&active)
}

// sorted returns the records by identity name; only the active ones when
// activeOnly.
func (q *quarantines) sorted(activeOnly bool) []QuarantineEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	return sortedEntries(q.entries, activeOnly)
}

func sortedEntries(entries map[string]QuarantineEntry, activeOnly bool) []QuarantineEntry {
	out := make([]QuarantineEntry, 0, len(entries))
	for _, e := range entries {
		if e.Active || !activeOnly {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b QuarantineEntry) int { return cmp.Compare(a.Identity, b.Identity) })
	return out
}

// hashEntries is a short content hash of the records (hex sha256, 16
// chars); "" for none.
func hashEntries(entries map[string]QuarantineEntry) string {
	if len(entries) == 0 {
		return ""
	}
	data, _ := json.Marshal(sortedEntries(entries, false))
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// loadQuarantine reads quarantine.json at start. No file is no quarantine;
// a file that cannot be read or parsed stops the start: running without
// it would silently release every quarantined identity.
func (g *Gateway) loadQuarantine() error {
	g.quar = &quarantines{}
	path := filepath.Join(g.cfg.stateDir(), quarantineFile)
	entries := make(map[string]QuarantineEntry)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("quarantine state: %w", err)
	default:
		var qs quarantineState
		if err := json.Unmarshal(data, &qs); err != nil {
			return fmt.Errorf("quarantine state %s: %w (fix or remove the file; removing it releases every quarantined identity)", path, err)
		}
		for _, e := range qs.Entries {
			entries[e.Identity] = e
		}
	}
	g.quar.installLocked(entries)
	if n := len(g.quar.sorted(true)); n > 0 {
		g.log.Warn("identities in quarantine", "count", n, "file", path)
	}
	return nil
}

// saveQuarantineLocked writes entries to quarantine.json atomically: a
// crash leaves the old file or the new one, never a mix.
func (g *Gateway) saveQuarantineLocked(entries map[string]QuarantineEntry) error {
	sorted := sortedEntries(entries, false)
	stored := make([]storedEntry, len(sorted))
	for i, e := range sorted {
		stored[i] = storedEntry{QuarantineEntry: e}
	}
	data, err := json.MarshalIndent(struct {
		Entries []storedEntry `json:"entries"`
	}{stored}, "", "  ")
	if err != nil {
		return err
	}
	return writeStateFile(g.cfg.stateDir(), quarantineFile, append(data, '\n'))
}

// QuarantineError is a refused quarantine or release: bad input, nothing
// changed. NotFound says the identity is unknown or not quarantined.
type QuarantineError struct {
	Msg      string
	NotFound bool
}

func (e *QuarantineError) Error() string { return e.Msg }

// Quarantine puts identity name in quarantine at once: the record is
// written to the state directory first (if that fails nothing changes),
// then new flows are denied, live flows revoked, and the change logged
// (identity.quarantine). An identity already quarantined keeps its record,
// which is returned with already set.
func (g *Gateway) Quarantine(name, reason, by string) (e QuarantineEntry, already bool, err error) {
	reason = strings.TrimSpace(reason)
	st := g.state.Load()
	switch {
	case st.pol.Site(name) != nil:
		return e, false, &QuarantineError{Msg: fmt.Sprintf("%s is a site gateway, not an identity: quarantining it would cut every flow the site serves and relays; stop that gateway, or remove the site from the policy", policy.Quote(name))}
	case st.pol.Identity(name) == nil:
		return e, false, &QuarantineError{NotFound: true, Msg: fmt.Sprintf("unknown identity %s in %s%s", policy.Quote(name), st.pol.File(), nearestIdentity(st.pol, name))}
	case reason == "":
		return e, false, &QuarantineError{Msg: "a reason is required (the EDR alert, the ticket): it goes to the audit log and to `wardgate quarantine list`"}
	case strings.ContainsFunc(reason, func(c rune) bool { return c < ' ' || c == 0x7f }):
		return e, false, &QuarantineError{Msg: "the reason has a control character; write one line of text"}
	case len(reason) > maxReasonLen:
		return e, false, &QuarantineError{Msg: fmt.Sprintf("the reason is %d bytes; at most %d are kept", len(reason), maxReasonLen)}
	}
	g.quar.mu.Lock()
	old, had := g.quar.entries[name]
	if had && old.Active {
		g.quar.mu.Unlock()
		return old, true, nil
	}
	now := g.changeTime(old)
	e = QuarantineEntry{Identity: name, Active: true, Reason: reason, By: by, Site: st.site.Name, Since: now, At: now}
	if err := g.changeLocked(e); err != nil {
		g.quar.mu.Unlock()
		return QuarantineEntry{}, false, err
	}
	g.quar.mu.Unlock()
	g.afterQuarantineChange(e, "")
	return g.withInPolicy(e), false, nil
}

// Release ends identity name's quarantine, as Quarantine started it
// (identity.release). An identity that is not quarantined, or unknown,
// is an error.
func (g *Gateway) Release(name, reason, by string) (QuarantineEntry, error) {
	reason = strings.TrimSpace(reason)
	if strings.ContainsFunc(reason, func(c rune) bool { return c < ' ' || c == 0x7f }) || len(reason) > maxReasonLen {
		return QuarantineEntry{}, &QuarantineError{Msg: "the reason must be one line of text of at most 256 bytes"}
	}
	g.quar.mu.Lock()
	old, had := g.quar.entries[name]
	if !had || !old.Active {
		g.quar.mu.Unlock()
		// A typo must not read as "that device is free": say the name
		// is unknown, as Quarantine does.
		if st := g.state.Load(); !had && st.pol.Identity(name) == nil {
			return QuarantineEntry{}, &QuarantineError{NotFound: true, Msg: fmt.Sprintf("unknown identity %s in %s%s", policy.Quote(name), st.pol.File(), nearestIdentity(st.pol, name))}
		}
		return QuarantineEntry{}, &QuarantineError{NotFound: true, Msg: fmt.Sprintf("%s is not quarantined", policy.Quote(name))}
	}
	now := g.changeTime(old)
	e := QuarantineEntry{Identity: name, Active: false, Reason: reason, By: by, Site: g.cfg.Site, Since: old.Since, At: now}
	if err := g.changeLocked(e); err != nil {
		g.quar.mu.Unlock()
		return QuarantineEntry{}, err
	}
	g.quar.mu.Unlock()
	g.afterQuarantineChange(e, "")
	return g.withInPolicy(e), nil
}

// maxReasonLen bounds the reason kept in the record and the audit log.
const maxReasonLen = 256

// changeTime is the time of a change that replaces old: now, or just after
// old when this gateway's clock is behind the one that made old.
func (g *Gateway) changeTime(old QuarantineEntry) time.Time {
	now := time.Now().UTC().Round(0)
	if !now.After(old.At) {
		now = old.At.Add(time.Nanosecond)
	}
	return now
}

// changeLocked writes the set with e, then puts it in force.
func (g *Gateway) changeLocked(e QuarantineEntry) error {
	next := make(map[string]QuarantineEntry, len(g.quar.entries)+1)
	for k, v := range g.quar.entries {
		next[k] = v
	}
	next[e.Identity] = e
	if err := g.saveQuarantineLocked(next); err != nil {
		return fmt.Errorf("quarantine state not written, nothing changed: %w", err)
	}
	g.quar.installLocked(next)
	return nil
}

// afterQuarantineChange logs a change now in force and, for a quarantine,
// ends the identity's live flows at once (the recheck every second catches
// a flow decided just before the change). fromSite names the site link a
// change was learned from; "" for a change made here.
func (g *Gateway) afterQuarantineChange(e QuarantineEntry, fromSite string) {
	event := EventIdentityRelease
	if e.Active {
		event = EventIdentityQuarantine
	}
	attrs := []slog.Attr{slog.String("identity", e.Identity), slog.String("reason", e.Reason),
		slog.String("by", e.By), slog.String("site", e.Site)}
	if fromSite != "" {
		attrs = append(attrs, slog.String("from_site", fromSite))
	}
	g.audit.LogAttrs(context.Background(), slog.LevelInfo, event, attrs...)
	if !e.Active {
		g.log.Info("identity released from quarantine", "identity", e.Identity, "by", e.By, "site", e.Site)
		return
	}
	g.reloadMu.Lock()
	n := g.revoke(g.state.Load())
	g.reloadMu.Unlock()
	g.log.Warn("identity quarantined", "identity", e.Identity, "reason", e.Reason, "by", e.By, "site", e.Site, "revoked", n)
}

// Quarantines lists the identities in quarantine now.
func (g *Gateway) Quarantines() []QuarantineEntry {
	out := g.quar.sorted(true)
	for i := range out {
		out[i] = g.withInPolicy(out[i])
	}
	return out
}

func (g *Gateway) withInPolicy(e QuarantineEntry) QuarantineEntry {
	e.InPolicy = g.state.Load().pol.Identity(e.Identity) != nil
	return e
}

// quarantined applies quarantine to a decision: the one hook of the flow
// path (judge), so new flows, LAN flows, relayed flows at both ends and the
// recheck of live flows all see it.
func (g *Gateway) quarantined(st *state, v verdict) policy.Decision {
	if v.id == nil || !g.quar.has(v.id.Name) {
		return v.d
	}
	return st.pol.Quarantined(v.d, v.svc)
}

// quarantineHides reports whether quarantine keeps id from svc (DNS, ping).
func (g *Gateway) quarantineHides(st *state, id *policy.Identity, svc *policy.Service) bool {
	return id != nil && g.quar.has(id.Name) && !st.pol.QuarantineAllows(svc)
}

// reportQuarantineOrphans warns about quarantined identities the policy no
// longer has (after a reload): the records stay, so the quarantine applies
// again if the identity comes back, until someone releases it.
func (g *Gateway) reportQuarantineOrphans(st *state) {
	for _, e := range g.quar.sorted(true) {
		if st.pol.Identity(e.Identity) == nil {
			g.log.Warn("a quarantined identity is not in the policy; its quarantine stays until `wardgate release`", "identity", e.Identity, "since", e.Since)
		}
	}
}

func nearestIdentity(pol *policy.Policy, name string) string {
	names := make([]string, 0, len(pol.Identities()))
	for _, id := range pol.Identities() {
		names = append(names, id.Name)
	}
	if c, ok := policy.Nearest(name, names); ok {
		return fmt.Sprintf(" (did you mean %s?)", policy.Quote(c))
	}
	return ""
}
