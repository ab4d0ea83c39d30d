package gateway

import (
	"encoding/json"
	"io"
	"net/http"
)

// Quarantine over the site links. Every health probe carries the hash of
// the prober's quarantine records (hdrQuarantine); a gateway whose own
// records hash differently answers the probe with all of them (200, JSON
// quarantineState) instead of 204, and the prober merges them, the later
// record of each identity winning (QuarantineEntry.newer), before it
// counts the link as up. Both gateways probe each other, so a change made
// at either reaches the other within one probe interval, and a gateway
// that was down, or just started, learns every change on its first probe
// of a site that has it, before it relays any flow there.

// hdrQuarantine carries the hash of the sender's quarantine records.
const hdrQuarantine = "Wardgate-Quarantine"

// maxQuarantineBody bounds a quarantine answer read from another site
// (records are a few hundred bytes each).
const maxQuarantineBody = 8 << 20

// quarantineHash is the hash of this gateway's records, "" for none.
func (g *Gateway) quarantineHash() string {
	g.quar.mu.Lock()
	defer g.quar.mu.Unlock()
	return g.quar.hash
}

// offerQuarantine answers a probe with this gateway's records when the
// prober's differ, and reports whether it did.
func (g *Gateway) offerQuarantine(w http.ResponseWriter, r *http.Request) bool {
	g.quar.mu.Lock()
	hash := g.quar.hash
	entries := sortedEntries(g.quar.entries, false)
	g.quar.mu.Unlock()
	if hash == "" || r.Header.Get(hdrQuarantine) == hash {
		return false
	}
	w.Header().Set(hdrQuarantine, hash)
	writeJSON(w, http.StatusOK, quarantineState{Entries: entries})
	return true
}

// learnQuarantine merges the records another site answered a probe with.
func (g *Gateway) learnQuarantine(site string, resp *http.Response) {
	if resp.StatusCode != http.StatusOK || resp.Header.Get(hdrQuarantine) == "" {
		return
	}
	var qs quarantineState
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxQuarantineBody)).Decode(&qs); err != nil {
		g.log.Warn("quarantine records from a site not read", "site", site, "err", err)
		return
	}
	g.mergeQuarantine(site, qs.Entries)
}

// mergeQuarantine takes every record of entries that is newer than this
// gateway's, puts them in force and logs each that quarantines or releases
// an identity here as identity.quarantine or identity.release with
// from_site. A state file that cannot be written is
// reported, and the records applied all the same: the site that sent them
// will send them again after a restart.
func (g *Gateway) mergeQuarantine(from string, entries []QuarantineEntry) {
	g.quar.mu.Lock()
	var changed []QuarantineEntry
	dirty := false
	next := make(map[string]QuarantineEntry, len(g.quar.entries)+len(entries))
	for k, v := range g.quar.entries {
		next[k] = v
	}
	for _, e := range entries {
		if e.Identity == "" || len(e.Identity) > 64 || len(e.Reason) > maxReasonLen || len(e.By) > 1024 {
			continue
		}
		e.InPolicy = false
		old, ok := next[e.Identity]
		if ok && !e.newer(old) {
			continue
		}
		next[e.Identity] = e
		if e.Active != old.Active { // a record that changes nothing here is kept quietly
			changed = append(changed, e)
		}
		dirty = true
	}
	if dirty {
		if err := g.saveQuarantineLocked(next); err != nil {
			g.log.Error("quarantine state not written; the records learnt from a site apply until restart", "site", from, "err", err)
		}
		g.quar.installLocked(next)
	}
	g.quar.mu.Unlock()
	for _, e := range changed {
		g.afterQuarantineChange(e, from)
	}
}
