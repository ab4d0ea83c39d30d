// Package demo is `wardgate demo`: the whole story of wardgate in one
// process, with no root and no setup. Two site gateways (Leeds, the trust
// edge, and York) run on an in-memory UDP switch with their real WireGuard
// devices, network stacks, DNS and site links; userspace WireGuard clients
// (a radiologist's laptop, a reception PC, an infected ward PC and the PC
// next to it) reach HTTP
// backends on loopback through them. Policy changes are made the way an
// operator makes them: policy.toml is rewritten and the gateways reloaded.
//
// Every row of the table it prints comes from an audit event a gateway
// actually logged (flow.allow, flow.deny, flow.revoked, dns.query,
// dns.block, config.reload, identity.quarantine); the notes under the rows are what the clients
// actually experienced. A scene whose event or outcome does not come fails
// the demo.
//
// Layout: setup.go builds the world (keys, files, gateways, clients),
// policyfile.go writes policy.toml from its template, fixtures.go holds the
// HTTP backends and the trust's resolver, clients.go is what the clients
// do, audit.go collects the gateways' audit events, scenes.go is the
// story (quarantine.go its quarantine scene), table.go prints it.
package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Options tune a run. The zero value is the quiet demo.
type Options struct {
	// Audit, when set, receives every audit line of both gateways as it
	// is written, prefixed with the gateway's site.
	Audit io.Writer
	// Log, when set, receives the gateways' operational log at info
	// level; otherwise only errors are shown, on stderr.
	Log io.Writer
	// Timeout bounds the whole run; zero means one minute.
	Timeout time.Duration

	// anyPort has the backends take free ports instead of the familiar
	// ones (8443, 8080, 8444), so that tests never hold a port another
	// package's test may want.
	anyPort bool
}

// Run plays the demo, printing the table to w.
func Run(ctx context.Context, w io.Writer) error { return RunWith(ctx, w, Options{}) }

// RunWith is Run with options.
func RunWith(ctx context.Context, out io.Writer, opts Options) error {
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()

	fmt.Fprintln(out, "wardgate demo: two site gateways, three WireGuard clients and their services, in this one process.")
	fmt.Fprintln(out, "Setting up: keys generated now, policy.toml and gateway.toml in a temporary directory, WireGuard over an in-memory switch.")
	w, err := setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("demo setup: %w", err)
	}
	defer w.close()
	intro(out, w)

	t := newTable(out)
	fmt.Fprintln(out)
	t.header()
	p := &play{w: w, t: t}
	for _, s := range scenes {
		t.heading(s.title, s.context)
		if err := s.run(p, ctx); err != nil {
			return fmt.Errorf("scene %d (%s): %w", t.scene, s.title, err)
		}
	}
	summary(out, t, w, time.Since(start))
	return nil
}

// intro prints the cast: gateways, clients and services as the running
// policy has them.
func intro(out io.Writer, w *world) {
	pol := w.gws[leeds].Policy()
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Gateways (one policy.toml, one gateway.toml each):")
	for _, s := range sites {
		fmt.Fprintf(out, "  %-15s %-16s overlay %s, WireGuard port %d\n", s.Name, s.Role, s.Address, w.gws[s.Name].Port())
	}
	fmt.Fprintln(out, "Clients (userspace WireGuard, each with its own key):")
	for _, c := range clients {
		fmt.Fprintf(out, "  %-15s %-32s at %-5s groups %s\n", c.Name, c.Role, c.Site, strings.Join(c.Groups, ", "))
	}
	fmt.Fprintln(out, "Services (HTTP servers on loopback; VIPs handed out by DNS as NAME."+domain+"):")
	for _, svc := range pol.Services() {
		var ports []string
		for _, r := range svc.Ports {
			ports = append(ports, r.String())
		}
		fmt.Fprintf(out, "  %-15s at %-5s VIP %-12s ports %s\n", svc.Name, svc.Site, svc.VIP, strings.Join(ports, " "))
	}
}

// summary counts the verdicts of the rows and says what happened.
func summary(out io.Writer, t *table, w *world, took time.Duration) {
	c := t.counts
	logged := w.audit.count()
	fmt.Fprintln(out)
	fmt.Fprintln(out, "── Summary")
	fmt.Fprintf(out, "   flows:   %d allowed, %d denied, %d revoked (a relayed flow is decided at both sites: two rows)\n", c[vAllow], c[vDeny], c[vRevoked])
	fmt.Fprintf(out, "   dns:     %d answered, %d hidden (NXDOMAIN), %d blocked, %d refused (quarantine)\n", c[vAnswer], c[vNXDomain], c[vBlocked], c[vRefusedDNS])
	fmt.Fprintf(out, "   reloads: %d, every one applied without a restart\n", c[vReloaded])
	fmt.Fprintf(out, "   audit:   %d JSON lines at leeds, %d at york; %d rows above, all from them; %.1fs in all\n",
		logged[leeds], logged[york], t.rows, took.Seconds())
	fmt.Fprintln(out)
	fmt.Fprint(out, wrap(`What you just saw: two wardgate gateways and four WireGuard clients, all in this process, with real WireGuard, real network stacks and real DNS. Every connection was decided by identity and service, never by address: the radiologist reached PACS at York through Leeds, and York checked the laptop's identity again; reception could neither resolve PACS nor connect to it, and nothing crossed to York; a worm on a York ward PC had its command server lookup blocked and its SMB scan of the Leeds file share refused at York by the no-smb rule. EHR moved from Leeds to York with two edited lines of policy.toml and a reload: same name, same address, now served at York. A policy change cut a live connection within a second, logged as flow.revoked. A week of audit mode let would-be denials through and logged them; wardgate suggest turned them into a reviewed rule, held back what no-smb forbids, and enforcement came back on. Last, the worm's EDR had it quarantined with one call: its open connection was cut, its lookups and connections refused, the patch server still within reach, the PC next to it unaffected, and Leeds learnt the quarantine over the site link. Each row came from the gateways' audit log; run with --verbose to see the JSON lines.`, 78))
}

// wrap breaks text into lines of at most width runes, indented by three
// spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for _, word := range strings.Fields(text) {
		if line > 0 && line+1+len([]rune(word)) > width {
			b.WriteString("\n")
			line = 0
		}
		if line == 0 {
			b.WriteString("   ")
		} else {
			b.WriteString(" ")
			line++
		}
		b.WriteString(word)
		line += len([]rune(word))
	}
	b.WriteString("\n")
	return b.String()
}
