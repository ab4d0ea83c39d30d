package demo

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/wardgate/wardgate/policy"
)

// eventWait is how long a scene waits for the audit event its action
// causes: generous, the events come within milliseconds.
const eventWait = 5 * time.Second

// play runs the scenes in order; each prints its rows as it goes.
type play struct {
	w *world
	t *table
}

// scene is one step of the story.
type scene struct {
	title, context string
	run            func(p *play, ctx context.Context) error
}

var scenes = []scene{
	{"A radiologist at Leeds opens a study held at York",
		radiologist + " looks PACS up by name and loads the viewer; Leeds decides, relays, York decides again.",
		(*play).radiologistReadsPACS},
	{"Reception tries the same",
		reception + " may not use PACS: the name does not exist for it, and its address is refused.",
		(*play).receptionTriesPACS},
	{"A worm on a York ward PC",
		infected + " phones home to its command server, then scans the Leeds file share for SMB.",
		(*play).wormIsContained},
	{"EHR moves from Leeds to York",
		"The operator rewrites policy.toml (ehr: site leeds -> york) and reloads both gateways.",
		(*play).ehrMoves},
	{"A policy change revokes a live flow",
		"The radiologist streams a study; the operator drops radiology-reads-pacs and reloads.",
		(*play).accessRevoked},
	{"A week of audit mode, condensed",
		"Both gateways log would-be denials and let them pass; wardgate suggest reads Leeds's audit log; the reviewed rule goes in, enforcement comes back on.",
		(*play).auditWeek},
	{"The EDR quarantines the ward PC",
		"The EDR's playbook calls York's admin API: " + infected + " is cut off; the patch server stays reachable; " + wardPC + " works on.",
		(*play).wormQuarantined},
}

// waitEvent waits for an event after mark and fails the scene without it.
func (p *play) waitEvent(ctx context.Context, mark int, what string, m match) (event, error) {
	return p.w.audit.wait(ctx, mark, eventWait, what, m)
}

// resolve has who look name up and prints the row for the gateway's
// dns.query or dns.block event. It returns the address the client got, if
// any.
func (p *play) resolve(ctx context.Context, who, name string) (netip.Addr, error) {
	at := clientSite(who)
	mark := p.w.audit.mark()
	r, err := p.w.lookup(ctx, who, name)
	if err != nil {
		return netip.Addr{}, err
	}
	e, err := p.waitEvent(ctx, mark, who+" looking up "+name, func(e event) bool {
		return e.at == at && (e.name() == "dns.query" || e.name() == "dns.block") &&
			e.str("identity") == who && e.str("qname") == name
	})
	if err != nil {
		return netip.Addr{}, err
	}
	addr, _ := answerA(r)
	rw := row{who: who, what: "dns " + name, where: e.at}
	switch {
	case e.name() == "dns.block":
		rw.verdict, rw.why = vBlocked, "blocklist "+e.str("rule")
	case e.str("rcode") == "NOERROR" && addr.IsValid():
		rw.verdict, rw.why = vAnswer, "NOERROR -> "+addr.String()
		if !p.w.pol(at).Overlay().ServicePrefix.Contains(addr) {
			rw.why += " (from the trust resolver)"
		}
	case e.str("rcode") == "NXDOMAIN":
		rw.verdict, rw.why = vNXDomain, "NXDOMAIN"
	case e.str("rcode") == "REFUSED":
		rw.verdict, rw.why = vRefusedDNS, "REFUSED"
	default:
		rw.verdict, rw.why = e.str("rcode"), "no address"
	}
	if got := dns.RcodeToString[r.Rcode]; got != e.str("rcode") {
		return netip.Addr{}, fmt.Errorf("%s got %s for %s, the gateway logged %s", who, got, name, e.str("rcode"))
	}
	p.t.add(rw)
	return addr, nil
}

// flowRow is the row of a flow event: flow.allow, flow.deny or
// flow.revoked.
func flowRow(e event) row {
	r := row{who: e.str("identity"), where: e.at,
		what: fmt.Sprintf("%s:%s/%s", e.str("service"), e.str("port"), e.str("proto"))}
	switch e.name() {
	case "flow.allow":
		r.verdict, r.why = vAllow, e.str("rule")
	case "flow.deny":
		r.verdict, r.why = vDeny, e.str("reason")
		if rule := e.str("rule"); rule != "" {
			r.why = rule + " (" + e.str("reason") + ")"
		}
	case "flow.revoked":
		r.verdict, r.why = vRevoked, "now "+e.str("reason")
	default:
		r.verdict = e.name()
	}
	if from := e.str("from_site"); from != "" {
		r.why += ", relayed from " + from
	}
	return r
}

// reload has the operator reload site's gateway and prints the row of its
// config.reload event.
func (p *play) reload(ctx context.Context, site, what string) error {
	mark := p.w.audit.mark()
	if _, err := p.w.gws[site].Reload(); err != nil {
		return fmt.Errorf("reload %s: %w", site, err)
	}
	e, err := p.waitEvent(ctx, mark, "config.reload at "+site, is(site, "config.reload"))
	if err != nil {
		return err
	}
	p.t.add(row{who: "operator", what: what, where: site, verdict: vReloaded, why: "policy " + e.str("hash")})
	return nil
}

// pol is the policy site's gateway runs.
func (w *world) pol(site string) *policy.Policy { return w.gws[site].Policy() }

// vip is the address a service has in site's running policy.
func (p *play) vip(site, service string) netip.Addr {
	return p.w.gws[site].Policy().Service(service).VIP
}

func (p *play) radiologistReadsPACS(ctx context.Context) error {
	name := "pacs." + domain
	vip, err := p.resolve(ctx, radiologist, name)
	if err != nil {
		return err
	}
	if !vip.IsValid() {
		return fmt.Errorf("%s got no address for %s", radiologist, name)
	}
	mark := p.w.audit.mark()
	res, err := p.w.get(ctx, radiologist, name, netip.AddrPortFrom(vip, p.w.pacs.addr.Port()), "/studies/CT-2291")
	if err != nil {
		return fmt.Errorf("%s reading PACS: %w", radiologist, err)
	}
	here, err := p.waitEvent(ctx, mark, "flow.allow at leeds", is(leeds, "flow.allow", "identity", radiologist, "service", "pacs"))
	if err != nil {
		return err
	}
	there, err := p.waitEvent(ctx, mark, "flow.allow at york", is(york, "flow.allow", "identity", radiologist, "service", "pacs", "community_id", here.str("community_id")))
	if err != nil {
		return err
	}
	p.t.add(flowRow(here))
	p.t.add(flowRow(there))
	p.t.note("the laptop got %s", res)
	return nil
}

func (p *play) receptionTriesPACS(ctx context.Context) error {
	if _, err := p.resolve(ctx, reception, "pacs."+domain); err != nil {
		return err
	}
	// The address is no secret (it is on a sticky note by the desk).
	dst := netip.AddrPortFrom(p.vip(leeds, "pacs"), p.w.pacs.addr.Port())
	mark := p.w.audit.mark()
	took, err := p.w.dial(ctx, reception, dst)
	if !refused(err) {
		return fmt.Errorf("%s dialing PACS at %v: want connection refused, got %v", reception, dst, err)
	}
	e, err := p.waitEvent(ctx, mark, "flow.deny at leeds", is(leeds, "flow.deny", "identity", reception, "service", "pacs"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	crossed := p.w.audit.since(mark, func(e event) bool { return e.at == york && e.str("identity") == reception })
	p.t.note("its connection to %v was refused in %v; York logged %d events for %s: nothing crossed", dst, ms(took), len(crossed), reception)
	return nil
}

func (p *play) wormIsContained(ctx context.Context) error {
	if _, err := p.resolve(ctx, infected, publicName); err != nil {
		return err
	}
	if n := p.w.resolver.askedAbout(publicName); n == 0 {
		return fmt.Errorf("the trust resolver was never asked about %s", publicName)
	}
	if _, err := p.resolve(ctx, infected, c2Name); err != nil {
		return err
	}
	p.t.note("the worm got NXDOMAIN; the trust resolver was asked about %s %s, about %s %s",
		publicName, times(p.w.resolver.askedAbout(publicName)), c2Name, times(p.w.resolver.askedAbout(c2Name)))

	share := p.vip(york, "fileshare")
	mark := p.w.audit.mark()
	var tooks []time.Duration
	for _, port := range []uint16{445, 139} {
		took, err := p.w.dial(ctx, infected, netip.AddrPortFrom(share, port))
		if !refused(err) {
			return fmt.Errorf("%s dialing the file share on %d: want connection refused, got %v", infected, port, err)
		}
		tooks = append(tooks, took)
		e, err := p.waitEvent(ctx, mark, fmt.Sprintf("flow.deny of port %d at york", port),
			is(york, "flow.deny", "identity", infected, "service", "fileshare", "port", fmt.Sprint(port)))
		if err != nil {
			return err
		}
		p.t.add(flowRow(e))
	}
	atLeeds := p.w.audit.since(mark, func(e event) bool { return e.at == leeds && e.str("identity") == infected })
	p.t.note("both refused at York (%v, %v); Leeds, where the share is, logged %d events for %s: lateral movement stopped",
		ms(tooks[0]), ms(tooks[1]), len(atLeeds), infected)
	return nil
}

func (p *play) ehrMoves(ctx context.Context) error {
	name := "ehr." + domain
	before, err := p.resolve(ctx, radiologist, name)
	if err != nil {
		return err
	}
	if !before.IsValid() {
		return fmt.Errorf("%s got no address for %s", radiologist, name)
	}
	mark := p.w.audit.mark()
	res, err := p.w.get(ctx, radiologist, name, netip.AddrPortFrom(before, p.w.ehrLeeds.addr.Port()), "/patients/4857773456")
	if err != nil {
		return fmt.Errorf("%s reading EHR at Leeds: %w", radiologist, err)
	}
	e, err := p.waitEvent(ctx, mark, "flow.allow of ehr at leeds", is(leeds, "flow.allow", "identity", radiologist, "service", "ehr"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	p.t.note("the laptop got %s", res)

	p.w.vars.EHRSite, p.w.vars.EHR = york, p.w.ehrYork.addr.String()
	diff, err := p.w.writePolicy()
	if err != nil {
		return err
	}
	p.t.diff(`[[service]] "ehr"`, diff)
	// York first, so that it serves EHR before Leeds starts relaying.
	for _, s := range []string{york, leeds} {
		if err := p.reload(ctx, s, "ehr: site leeds -> york"); err != nil {
			return err
		}
	}

	after, err := p.resolve(ctx, radiologist, name)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("%s's address changed with the move: %v, was %v", name, after, before)
	}
	mark = p.w.audit.mark()
	res, err = p.w.get(ctx, radiologist, name, netip.AddrPortFrom(after, p.w.ehrYork.addr.Port()), "/patients/4857773456")
	if err != nil {
		return fmt.Errorf("%s reading EHR after the move: %w", radiologist, err)
	}
	here, err := p.waitEvent(ctx, mark, "flow.allow of ehr at leeds", is(leeds, "flow.allow", "identity", radiologist, "service", "ehr"))
	if err != nil {
		return err
	}
	there, err := p.waitEvent(ctx, mark, "flow.allow of ehr at york", is(york, "flow.allow", "identity", radiologist, "service", "ehr", "community_id", here.str("community_id")))
	if err != nil {
		return err
	}
	p.t.add(flowRow(here))
	p.t.add(flowRow(there))
	p.t.note("same name, same address %v; the laptop got %s", after, res)
	return nil
}

func (p *play) accessRevoked(ctx context.Context) error {
	name := "pacs." + domain
	dst := netip.AddrPortFrom(p.vip(leeds, "pacs"), p.w.pacs.addr.Port())
	mark := p.w.audit.mark()
	s, err := p.w.openStream(ctx, radiologist, name, dst, "/stream")
	if err != nil {
		return fmt.Errorf("%s streaming from PACS: %w", radiologist, err)
	}
	defer s.close()
	here, err := p.waitEvent(ctx, mark, "flow.allow of the stream at leeds", is(leeds, "flow.allow", "identity", radiologist, "service", "pacs"))
	if err != nil {
		return err
	}
	there, err := p.waitEvent(ctx, mark, "flow.allow of the stream at york", is(york, "flow.allow", "identity", radiologist, "service", "pacs", "community_id", here.str("community_id")))
	if err != nil {
		return err
	}
	p.t.add(flowRow(here))
	p.t.add(flowRow(there))
	var last string
	for range 3 {
		if last, err = s.next(2 * time.Second); err != nil {
			return fmt.Errorf("stream from PACS: %w", err)
		}
	}
	p.t.note("the viewer is loading the study through both gateways: %s so far", last)

	p.w.vars.RadiologyReadsPACS = false
	diff, err := p.w.writePolicy()
	if err != nil {
		return err
	}
	p.t.diff("rules", diff)
	mark = p.w.audit.mark()
	start := time.Now()
	// Leeds first: the gateway the laptop is connected to cuts the flow.
	for _, site := range []string{leeds, york} {
		if err := p.reload(ctx, site, "drop radiology-reads-pacs"); err != nil {
			return err
		}
	}
	var endErr error
	select {
	case endErr = <-s.ended:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("the stream was still open 5s after the reload")
	}
	took := time.Since(start)
	slices := 3
	for range s.lines {
		slices++
	}
	revoked, err := p.waitEvent(ctx, mark, "flow.revoked at leeds", is(leeds, "flow.revoked", "identity", radiologist, "service", "pacs"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(revoked))
	for _, e := range p.w.audit.since(mark, is(york, "flow.revoked", "identity", radiologist, "service", "pacs")) {
		p.t.add(flowRow(e))
	}
	p.t.note("the viewer's connection ended %v after the reload began (%s), after %d slices", ms(took), lastPart(endErr), slices)

	mark = p.w.audit.mark()
	tookNew, err := p.w.dial(ctx, radiologist, dst)
	if !refused(err) {
		return fmt.Errorf("%s reconnecting to PACS after the revocation: want connection refused, got %v", radiologist, err)
	}
	e, err := p.waitEvent(ctx, mark, "flow.deny at leeds", is(leeds, "flow.deny", "identity", radiologist, "service", "pacs"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	p.t.note("reconnecting is refused (%v)", ms(tookNew))
	return nil
}

// times says how often: "never", "once", "twice", "3 times".
func times(n int) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// lastPart is the end of an error's text ("connection reset by peer"
// rather than the whole chain).
func lastPart(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// ms rounds a duration for the table: milliseconds, or below one.
func ms(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
