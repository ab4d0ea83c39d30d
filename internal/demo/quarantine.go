package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/wardgate/wardgate/gateway"
)

// The quarantine scene: the EDR on the infected ward PC raises an alert and
// its playbook calls York's admin API (here, the same call in process). The
// PC's live connection is cut, its lookups and connections stop, but it can
// still fetch its cure from the patch server; the PC next to it works on.

const (
	wardPC    = "york-ward-pc-8"
	edrReason = "EDR alert 4711: worm (SMB scanner) on york-ward-pc-7"
	// edrCaller is who the admin socket would report for the EDR's
	// playbook (SO_PEERCRED).
	edrCaller = "uid 994 (edr), pid 3121 (edr-playbook)"
	// vQuarantined is the row of the EDR's call; vRefusedDNS a lookup the
	// gateway refused.
	vQuarantined = "quarantined"
	vRefusedDNS  = "refused"
)

func (p *play) wormQuarantined(ctx context.Context) error {
	// The worm still holds a connection to the Leeds file share's web
	// front end, its request half sent.
	share := netip.AddrPortFrom(p.vip(york, "fileshare"), p.w.fileWeb.addr.Port())
	mark := p.w.audit.mark()
	held, err := p.w.clients[infected].DialContext(ctx, "tcp4", share.String())
	if err != nil {
		return fmt.Errorf("%s holding a connection to the file share: %w", infected, err)
	}
	defer held.Close()
	held.Write([]byte("GET /shares/ HTTP/1.1\r\nHost: fileshare\r\n"))
	e, err := p.waitEvent(ctx, mark, "flow.allow of the worm's connection at york", is(york, "flow.allow", "identity", infected, "service", "fileshare"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))

	mark = p.w.audit.mark()
	start := time.Now()
	if _, _, err := p.w.gws[york].Quarantine(infected, edrReason, edrCaller); err != nil {
		return fmt.Errorf("the EDR quarantining %s: %w", infected, err)
	}
	q, err := p.waitEvent(ctx, mark, "identity.quarantine at york", is(york, "identity.quarantine", "identity", infected))
	if err != nil {
		return err
	}
	p.t.add(row{who: "edr", what: "quarantine " + infected, where: york, verdict: vQuarantined, why: "EDR alert 4711"})
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, readErr := held.Read(make([]byte, 1))
	if readErr == nil || errors.Is(readErr, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the worm's connection outlived the quarantine: %v", readErr)
	}
	took := time.Since(start)
	revoked, err := p.waitEvent(ctx, mark, "flow.revoked at york", is(york, "flow.revoked", "identity", infected, "service", "fileshare"))
	if err != nil {
		return err
	}
	p.t.add(flowRow(revoked))
	p.t.note("by %s; the worm's open connection ended %v after the call (%s)", q.str("by"), ms(took), lastPart(readErr))

	for _, name := range []string{"fileshare." + domain, publicName} {
		if _, err := p.resolve(ctx, infected, name); err != nil {
			return err
		}
	}
	mark = p.w.audit.mark()
	if _, err := p.w.dial(ctx, infected, share); !refused(err) {
		return fmt.Errorf("%s dialing the file share in quarantine: want connection refused, got %v", infected, err)
	}
	if e, err = p.waitEvent(ctx, mark, "flow.deny at york", is(york, "flow.deny", "identity", infected, "reason", "quarantined")); err != nil {
		return err
	}
	p.t.add(flowRow(e))

	patch := "patch-server." + domain
	if err := p.fetch(ctx, infected, patch, p.w.patch.addr.Port(), "/definitions/latest", "patch-server"); err != nil {
		return err
	}
	if err := p.fetch(ctx, wardPC, "ehr."+domain, p.w.ehrLeeds.addr.Port(), "/patients/9434765919", "ehr"); err != nil {
		return err
	}

	// Leeds learns it over the site link, and would refuse the worm's
	// relayed flows on its own.
	for !slices.ContainsFunc(p.w.gws[leeds].Quarantines(), func(e gateway.QuarantineEntry) bool { return e.Identity == infected }) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("leeds never learnt the quarantine: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Second {
			return errors.New("leeds did not learn the quarantine within 10s")
		}
	}
	p.t.note("Leeds learnt the quarantine over the site link %v after the call; it stays across restarts and policy reloads", ms(time.Since(start)))
	return nil
}

// fetch has who resolve name and GET path from its service, and prints
// the lookup and the home gateway's flow.allow.
func (p *play) fetch(ctx context.Context, who, name string, port uint16, path, service string) error {
	addr, err := p.resolve(ctx, who, name)
	if err != nil {
		return err
	}
	if !addr.IsValid() {
		return fmt.Errorf("%s got no address for %s", who, name)
	}
	mark := p.w.audit.mark()
	res, err := p.w.get(ctx, who, name, netip.AddrPortFrom(addr, port), path)
	if err != nil {
		return fmt.Errorf("%s fetching %s: %w", who, name, err)
	}
	e, err := p.waitEvent(ctx, mark, "flow.allow at "+clientSite(who), is(clientSite(who), "flow.allow", "identity", who, "service", service))
	if err != nil {
		return err
	}
	p.t.add(flowRow(e))
	p.t.note("%s got %s", who, res)
	return nil
}
