package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/internal/enroll"
	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
)

// cmdPeer dispatches `wardgate peer add|rotate|remove|list`.
func cmdPeer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: wardgate peer add|rotate|remove|list -c gateway.toml ...   (wardgate peer --help)")
		return 2
	}
	switch args[0] {
	case "add":
		return cmdPeerAdd(args[1:], stdout, stderr)
	case "rotate":
		return cmdPeerRotate(args[1:], stdout, stderr)
	case "remove", "rm":
		return cmdPeerRemove(args[1:], stdout, stderr)
	case "list", "ls":
		return cmdPeerList(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "wardgate peer: unknown subcommand %q: want add, rotate, remove or list\n", args[0])
	return 2
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`peer add NAME --groups a,b`), which package flag
// alone stops at. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" { // fs.Parse consumed a "--" only when it came first
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// policyTarget is the policy file a peer command edits and the site a new
// identity defaults to: -c names a gateway.toml (its policy and site) or a
// policy.toml (then --site is needed for add).
type policyTarget struct {
	path string
	site string // "" for a policy.toml
}

func findPolicy(file string) (policyTarget, error) {
	gw, _ := isGatewayConfig(file)
	if !gw {
		return policyTarget{path: file}, nil
	}
	cfg, err := gateway.LoadConfig(file)
	if err != nil {
		return policyTarget{}, err
	}
	return policyTarget{path: cfg.Path(cfg.Policy), site: cfg.Site}, nil
}

// printRollout tells which gateways need the edited policy: every one. The
// identity's home gateway holds its WireGuard peer; every other site's
// gateway decides the flows the home site relays to it with its own copy
// of the policy, and the site links compare policy hashes.
func printRollout(w io.Writer, pol *policy.Policy, home, atHome, elsewhere string) {
	fmt.Fprintf(w, "apply it on every gateway: copy %s to each and run `wardgate reload` there:\n", filepath.Base(pol.File()))
	for _, s := range pol.Sites() {
		if s.Name == home {
			fmt.Fprintf(w, "  %s (home): %s\n", s.Name, atHome)
		}
	}
	for _, s := range pol.Sites() {
		if s.Name != home {
			fmt.Fprintf(w, "  %s: %s\n", s.Name, elsewhere)
		}
	}
}

// cmdPeerAdd enrols an identity: it adds it to the policy (see
// internal/enroll) and writes the client's wg-quick config to -o FILE or
// stdout (`wardgate peer add ... > desk.conf` works: messages go to
// stderr). --qr also prints the config as a QR code for the mobile apps,
// on stderr (stdout stays a valid wg-quick file), drawn with half-block
// characters, two modules per character cell, light modules as blocks: it
// reads as a normal QR code on a dark-background terminal, like
// `qrencode -t ansiutf8`.
func cmdPeerAdd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("peer add", stderr)
	file := fs.String("c", "", "gateway.toml (or policy.toml with --site)")
	groups := fs.String("groups", "", "comma-separated groups, e.g. clinical-desktop,radiology")
	site := fs.String("site", "", "home site (default: the gateway's site)")
	pubkey := fs.String("pubkey", "", "the client's public key; without it a key pair is generated")
	cf := addConfigFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: wardgate peer add -c gateway.toml NAME --groups a,b [--site S] [--pubkey KEY] [-o FILE [--force]] [--qr]")
		return 2
	}
	req := enroll.Request{Name: pos[0], Site: *site}
	for _, g := range strings.Split(*groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			req.Groups = append(req.Groups, g)
		}
	}
	if *pubkey != "" {
		k, err := wgkey.ParsePublic(strings.TrimSpace(*pubkey))
		if err != nil {
			fmt.Fprintf(stderr, "wardgate peer add: --pubkey: %v\n", err)
			return 2
		}
		req.Key = k
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	if req.Site == "" {
		req.Site = tgt.site
	}
	if req.Site == "" {
		fmt.Fprintf(stderr, "wardgate peer add: %s is a policy file: say which site the identity connects to with --site\n", *file)
		return 2
	}
	out, code := cf.prepareOut("peer add", stderr)
	if code != 0 {
		return code
	}
	res, err := enroll.Add(tgt.path, req)
	if err != nil {
		if out != nil {
			out.abort()
		}
		printRefusal(stderr, "peer add", err)
		return 1
	}
	cc, err := enroll.ClientFor(res.Policy, req.Name, res.PrivateKey)
	if err != nil { // cannot happen: Add checked the identity and its site
		if out != nil {
			out.abort()
		}
		printErr(stderr, err)
		return 1
	}
	for _, w := range res.Policy.Warnings() {
		if strings.Contains(w.Msg, strconv.Quote(req.Name)) {
			fmt.Fprintf(stderr, "warning: %s\n", w.Error())
		}
	}
	for _, g := range res.NewGroups {
		fmt.Fprintf(stderr, "warning: group %q is new: no rule names it yet\n", g)
	}
	printConfigNotes(stderr, cc, res.PrivateKey)
	fmt.Fprintf(stderr, "added identity %s (%s) to %s\n", req.Name, res.Identity.Address, tgt.path)
	printRollout(stderr, res.Policy, req.Site, "adds it as a WireGuard peer", "believes its flows when "+req.Site+" relays them")
	return cf.deliver("peer add", out, cc.Render(), stdout, stderr)
}

// printConfigNotes says what the operator must know about a client config
// before handing it over.
func printConfigNotes(stderr io.Writer, cc *enroll.ClientConfig, priv wgkey.Private) {
	if cc.Endpoint == "" {
		fmt.Fprintf(stderr, "warning: site %q has no endpoint in the policy: fill in Endpoint in the client config\n", cc.SiteName)
	}
	if priv.IsZero() {
		fmt.Fprintln(stderr, "note: fill in the client's own PrivateKey in [Interface]")
	} else {
		fmt.Fprintln(stderr, "note: the config holds the client's private key; it is not kept anywhere else: hand it over safely")
	}
}

// cmdPeerRotate gives an identity a new key (see enroll.Rotate) and hands
// out its new config like peer add. There is no overlap: a WireGuard peer
// has one key, so the old key is refused the moment the home gateway
// reloads, and the new one works from then on. Hence the advice to get the
// new config onto the client first and reload after.
func cmdPeerRotate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("peer rotate", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	pubkey := fs.String("pubkey", "", "the client's new public key; without it a key pair is generated")
	cf := addConfigFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: wardgate peer rotate -c gateway.toml NAME [--pubkey KEY] [-o FILE [--force]] [--qr]")
		return 2
	}
	var key wgkey.Public
	if *pubkey != "" {
		if key, err = wgkey.ParsePublic(strings.TrimSpace(*pubkey)); err != nil {
			fmt.Fprintf(stderr, "wardgate peer rotate: --pubkey: %v\n", err)
			return 2
		}
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	out, code := cf.prepareOut("peer rotate", stderr)
	if code != 0 {
		return code
	}
	res, err := enroll.Rotate(tgt.path, pos[0], key)
	if err != nil {
		if out != nil {
			out.abort()
		}
		printRefusal(stderr, "peer rotate", err)
		return 1
	}
	cc, err := enroll.ClientFor(res.Policy, pos[0], res.PrivateKey)
	if err != nil {
		if out != nil {
			out.abort()
		}
		printErr(stderr, err)
		return 1
	}
	printConfigNotes(stderr, cc, res.PrivateKey)
	home := res.Identity.Site
	fmt.Fprintf(stderr, "new key for identity %s (%s, address unchanged) in %s\n", pos[0], res.Identity.Address, tgt.path)
	fmt.Fprintf(stderr, "the old key works until %s reloads and is refused from then on: put the new config on the client first, then reload\n", home)
	printRollout(stderr, res.Policy, home, "swaps the peer's key (the old key is refused from now on)", "keeps the same policy as the others (its key for the identity is not used there)")
	return cf.deliver("peer rotate", out, cc.Render(), stdout, stderr)
}

// cmdPeerRemove deletes an identity's [[identity]] block from the policy
// (see enroll.Remove: a WireGuard identity's address is retired).
// An identity that a rule or test names cannot go: the policy error says
// where, and nothing is written.
func cmdPeerRemove(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("peer remove", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: wardgate peer remove -c gateway.toml NAME")
		return 2
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	id, np, err := enroll.Remove(tgt.path, pos[0])
	if err != nil {
		printRefusal(stderr, "peer remove", err)
		return 1
	}
	if id.IsLAN() {
		fmt.Fprintf(stderr, "removed identity %s (LAN source %s) from %s\n", id.Name, id.Source, tgt.path)
		printRollout(stderr, np, id.Site, "stops accepting it at its listeners", "stops believing its relayed flows")
		return 0
	}
	fmt.Fprintf(stderr, "removed identity %s (%s) from %s; its address is retired (peer add will not reuse it)\n", id.Name, id.Address, tgt.path)
	printRollout(stderr, np, id.Site, "removes its WireGuard peer", "stops believing its relayed flows")
	return 0
}

// printRefusal prints why an edit was refused: the headline, then each
// policy problem (file:line) on a line of its own.
func printRefusal(stderr io.Writer, cmd string, err error) {
	var le *policy.LoadError
	if !errors.As(err, &le) {
		fmt.Fprintf(stderr, "wardgate %s: %v\n", cmd, err)
		return
	}
	head := strings.TrimSuffix(err.Error(), le.Error())
	head = strings.TrimSuffix(strings.TrimSpace(head), ":")
	if head == "" {
		head = "refused, nothing written"
	}
	fmt.Fprintf(stderr, "wardgate %s: %s:\n", cmd, head)
	printErr(stderr, le)
}

// cmdPeerList prints the policy's identities.
func cmdPeerList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("peer list", stderr)
	file := fs.String("c", "", "gateway.toml or policy.toml")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *file == "" || len(pos) != 0 {
		fmt.Fprintln(stderr, "usage: wardgate peer list -c gateway.toml")
		return 2
	}
	tgt, err := findPolicy(*file)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	pol, err := policy.Load(tgt.path)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSITE\tADDRESS/SOURCE\tGROUPS")
	for _, id := range pol.Identities() {
		where := id.Address.String()
		if id.IsLAN() {
			where = "lan " + id.Source.String()
		}
		g := strings.Join(id.Groups, ",")
		if g == "" {
			g = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id.Name, id.Site, where, g)
	}
	tw.Flush()
	return 0
}
