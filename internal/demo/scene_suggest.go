package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/wardgate/wardgate/internal/suggest"
)

// The scene "a week of audit mode, condensed": both gateways log would-be
// denials and let them pass; the clients go about their week; `wardgate
// suggest` reads Leeds's audit log and proposes the rule that would allow
// what was needed, leaving out what the no-smb deny rule forbids; the
// operator applies the reviewed rule and turns enforcement back on.

// Verdicts of this scene: a flow let through in audit mode, and what
// suggest proposed.
const (
	vAudit    = "audit"
	vProposed = "proposed"
)

// weekStudies is how many studies the radiologist opens during the
// condensed week.
const weekStudies = 3

// auditWeek is the scene.
func (p *play) auditWeek(ctx context.Context) error {
	for _, s := range []string{leeds, york} {
		if err := p.w.setEnforce(s, "audit"); err != nil {
			return err
		}
		if err := p.reload(ctx, s, `enforce = "audit"`); err != nil {
			return err
		}
	}
	mark := p.w.audit.mark()
	if err := p.week(ctx); err != nil {
		return err
	}

	// Leeds's audit log of the week, as the file an operator would feed
	// `wardgate suggest`.
	logPath := filepath.Join(p.w.dir, "leeds-audit.jsonl")
	if err := p.w.writeAuditLog(logPath, leeds, mark); err != nil {
		return err
	}
	pol := p.w.pol(leeds)
	c := suggest.New(pol, suggest.Options{})
	f, err := os.Open(logPath)
	if err != nil {
		return err
	}
	var bad error
	st, err := suggest.ReadAudit(f, logPath, c.Add, func(e *suggest.LineError) { bad = e })
	f.Close()
	if err == nil {
		err = bad
	}
	if err != nil {
		return err
	}
	res := c.Result()
	if len(res.Proposals) != 1 || res.Proposals[0].Service != "pacs" || len(res.Held) != 1 || res.Held[0].Rule != "no-smb" {
		return fmt.Errorf("suggest proposed %d rules and held %d kinds of flows, want one rule for pacs and the no-smb flows", len(res.Proposals), len(res.Held))
	}
	prop := res.Proposals[0]
	p.t.add(row{who: "operator", what: "suggest leeds-audit.jsonl", where: leeds, verdict: vProposed,
		why: fmt.Sprintf("%s (%d flows)", prop.Name, prop.Tally.Flows)})
	p.t.note("read %d audit lines, %d would-be denials; blocked by deny rule no-smb: %d flows, listed apart and never proposed",
		st.Lines, st.Denials, res.Held[0].Tally.Flows)

	// The reviewed rule goes into policy.toml; enforcement comes back on.
	var snippet bytes.Buffer
	if err := res.WriteTOML(&snippet); err != nil {
		return err
	}
	if _, _, err := res.Apply(pol.File(), mustRead(pol.File())); err != nil {
		return err
	}
	p.w.vars.Suggested = "\n# Reviewed from `wardgate suggest` after a week of audit mode.\n" + rulesOnly(snippet.String())
	diff, err := p.w.writePolicy()
	if err != nil {
		return err
	}
	p.t.diff("appended", diff)
	for _, s := range []string{york, leeds} {
		if err := p.w.setEnforce(s, "enforce"); err != nil {
			return err
		}
		if err := p.reload(ctx, s, `allow-pacs in, enforcing`); err != nil {
			return err
		}
	}
	return p.enforcedAgain(ctx, prop.Name)
}

// week is the condensed week: the radiologist opens studies on PACS
// (radiology-reads-pacs was dropped, so no rule allows it), and the worm
// keeps scanning for SMB. Both are let through, and logged flow.audit.
func (p *play) week(ctx context.Context) error {
	pacs := netip.AddrPortFrom(p.vip(leeds, "pacs"), p.w.pacs.addr.Port())
	mark := p.w.audit.mark()
	var res string
	for i := range weekStudies {
		var err error
		if res, err = p.w.get(ctx, radiologist, "pacs."+domain, pacs, fmt.Sprintf("/studies/MR-%d", 4410+i)); err != nil {
			return fmt.Errorf("%s reading PACS in audit mode: %w", radiologist, err)
		}
	}
	atLeeds := is(leeds, "flow.audit", "identity", radiologist, "service", "pacs")
	if err := p.waitCount(ctx, mark, weekStudies, "the studies' flow.audit at leeds", atLeeds); err != nil {
		return err
	}
	p.t.add(auditRow(p.w.audit.since(mark, atLeeds)[0]))
	p.t.note("%d studies opened through both gateways, each flow logged flow.audit (%s)", weekStudies, res)

	share := netip.AddrPortFrom(p.vip(york, "fileshare"), 445)
	mark = p.w.audit.mark()
	for range 2 {
		p.w.dial(ctx, infected, share) // nothing listens on 445: refused by the host
	}
	e, err := p.waitEvent(ctx, mark, "flow.audit of smb at york", is(york, "flow.audit", "identity", infected, "service", "fileshare"))
	if err != nil {
		return err
	}
	p.t.add(auditRow(e))
	// Relayed, the scans reach Leeds's log too: the file must hold them.
	if err := p.waitCount(ctx, mark, 2, "both smb scans at leeds", is(leeds, "flow.audit", "identity", infected, "service", "fileshare")); err != nil {
		return err
	}
	p.t.note("audit mode lets even the worm's SMB scan through: the lesson of running audit mode no longer than it takes")
	return nil
}

// enforcedAgain: the radiologist reaches PACS by the new rule; the worm's
// scan is refused again.
func (p *play) enforcedAgain(ctx context.Context, rule string) error {
	if _, err := p.resolve(ctx, radiologist, "pacs."+domain); err != nil {
		return err
	}
	pacs := netip.AddrPortFrom(p.vip(leeds, "pacs"), p.w.pacs.addr.Port())
	mark := p.w.audit.mark()
	if _, err := p.w.get(ctx, radiologist, "pacs."+domain, pacs, "/studies/MR-4413"); err != nil {
		return fmt.Errorf("%s reading PACS under the new rule: %w", radiologist, err)
	}
	e, err := p.waitEvent(ctx, mark, "flow.allow of pacs at leeds", is(leeds, "flow.allow", "identity", radiologist, "service", "pacs", "rule", rule))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	mark = p.w.audit.mark()
	if _, err := p.w.dial(ctx, infected, netip.AddrPortFrom(p.vip(york, "fileshare"), 445)); !refused(err) {
		return fmt.Errorf("%s scanning SMB after enforcement: want connection refused, got %v", infected, err)
	}
	e, err = p.waitEvent(ctx, mark, "flow.deny of smb at york", is(york, "flow.deny", "identity", infected, "service", "fileshare"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	p.t.note("enforcing again: what the week needed is allowed by a reviewed rule, the rest denied")
	return nil
}

// waitCount waits until n events from position mark on match m.
func (p *play) waitCount(ctx context.Context, mark, n int, what string, m match) error {
	for {
		cur := p.w.audit.mark() // before counting: an event after it wakes the wait below
		if len(p.w.audit.since(mark, m)) >= n {
			return nil
		}
		if _, err := p.waitEvent(ctx, cur, what, m); err != nil {
			return err
		}
	}
}

// auditRow is the row of a flow.audit event: a would-be denial let
// through.
func auditRow(e event) row {
	r := flowRow(e)
	r.verdict, r.why = vAudit, e.str("reason")
	if rule := e.str("rule"); rule != "" {
		r.why = rule + " (" + e.str("reason") + ")"
	}
	r.why += ", let through"
	return r
}

// setEnforce rewrites site's gateway.toml with enforce = mode.
func (w *world) setEnforce(site, mode string) error {
	path := filepath.Join(w.dir, site, "gateway.toml")
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var kept []string
	for _, l := range strings.SplitAfter(string(text), "\n") {
		if !strings.HasPrefix(l, "enforce = ") {
			kept = append(kept, l)
		}
	}
	out := fmt.Sprintf("enforce = %q\n", mode) + strings.Join(kept, "")
	return os.WriteFile(path, []byte(out), 0o644)
}

// writeAuditLog writes the events site logged from position mark on as
// JSON lines, as the gateway's audit file would hold them.
func (w *world) writeAuditLog(path, site string, mark int) error {
	var b bytes.Buffer
	for _, e := range w.audit.since(mark, func(e event) bool { return e.at == site }) {
		line, err := json.Marshal(e.fields)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// rulesOnly keeps the [[rule]] and [[test]] tables of a suggest snippet
// and its comments on the rules, dropping the summary and the list of
// held flows (the operator has read them).
func rulesOnly(snippet string) string {
	var out []string
	started := false
	for _, l := range strings.Split(snippet, "\n") {
		if strings.HasPrefix(l, "# Not proposed") {
			break
		}
		if !started && strings.HasPrefix(l, "# allow-") {
			started = true
		}
		if started {
			out = append(out, l)
		}
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
