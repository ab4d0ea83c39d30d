package demo

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/wardgate/wardgate/gateway"
	"github.com/wardgate/wardgate/internal/wgclient"
	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// The cast. Names are what the policy, the audit log and the table use.
const (
	leeds = "leeds"
	york  = "york"

	radiologist = "dr-khan-laptop"
	reception   = "reception-pc"
	infected    = "york-ward-pc-7"

	domain = "nhs.internal"
)

// siteSpec is a gateway: its overlay address and WireGuard port on the
// in-memory switch.
type siteSpec struct {
	Name, Address string
	Port          int
	Role          string
}

// sites are the two gateways.
var sites = []siteSpec{
	{Name: leeds, Address: "100.80.0.1", Port: 51820, Role: "the trust edge"},
	{Name: york, Address: "100.80.0.2", Port: 51821, Role: "a smaller site"},
}

// clientSpec is a WireGuard peer: an identity with its key and address.
type clientSpec struct {
	Name, Address, Site string
	Groups              []string
	Role                string
}

// clients are the WireGuard peers: a radiologist's laptop and a reception
// PC at Leeds, and a ward PC at York that malware has taken over.

var clients = []clientSpec{
	{radiologist, "100.80.1.10", leeds, []string{"radiology", "clinical-desktop"}, "a radiologist's laptop"},
	{reception, "100.80.1.30", leeds, []string{"reception"}, "the front desk PC"},
	{infected, "100.80.2.17", york, []string{"clinical-desktop"}, "a ward PC, infected with a worm"},
}

// c2Name is what the worm on the infected PC looks up: its command and
// control server, on the trust's malware blocklist.
const (
	c2Name      = "beacon.wncry-c2.example"
	c2Blocklist = "**.wncry-c2.example"
	publicName  = "www.nhs.uk"
	publicAddr  = "203.0.113.80" // what the trust resolver answers for any name
)

// policyVars are what changes between versions of policy.toml during the
// demo: where EHR runs, and whether radiology may still read PACS.
type policyVars struct {
	Keys               map[string]string // public keys by site or identity name
	Sites              []siteSpec
	Clients            []clientSpec
	PACS               string // York's PACS web viewer, host:port
	EHRSite, EHR       string // where EHR runs and its backend
	FileWeb            string // the file share's web front end at Leeds
	RadiologyReadsPACS bool
	Domain             string // the overlay domain
	Suggested          string // rules from wardgate suggest, reviewed (scene_suggest.go)
}

// policyTemplate is policy.toml of the demo trust, filled with policyVars.
//
//go:embed policy.toml.tmpl
var policyText string

var policyTemplate = template.Must(template.New("policy").Parse(policyText))

// world is everything the demo runs: files, switch, gateways, clients,
// backends and the trust's resolver.
type world struct {
	dir   string
	sw    *memnet.Switch
	audit *auditLog
	opLog *slog.Logger

	keys    map[string]overlay.Key // private keys by site or identity name
	vars    policyVars
	gws     map[string]*gateway.Gateway
	clients map[string]*wgclient.Client

	pacs, ehrLeeds, ehrYork, fileWeb *backend
	resolver                         *trustResolver

	closers []func()
}

// setup writes the files, starts the backends, the resolver, both gateways
// and the clients, and waits for Leeds's site link to York.
func setup(ctx context.Context, opts Options) (w *world, err error) {
	w = &world{
		sw:      memnet.NewSwitch(),
		audit:   newAuditLog(opts.Audit),
		keys:    make(map[string]overlay.Key),
		gws:     make(map[string]*gateway.Gateway),
		clients: make(map[string]*wgclient.Client),
	}
	defer func() {
		if err != nil {
			w.close()
			w = nil
		}
	}()
	if opts.Log != nil {
		w.opLog = slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		w.opLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	w.dir, err = os.MkdirTemp("", "wardgate-demo-")
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, func() { os.RemoveAll(w.dir) })

	pub := make(map[string]string)
	for _, name := range []string{leeds, york, radiologist, reception, infected} {
		k, err := overlay.NewPrivateKey()
		if err != nil {
			return nil, err
		}
		w.keys[name] = k
		pub[name] = k.PublicKey().Base64()
	}

	// Backends on loopback: PACS at York, EHR at Leeds (and the copy at
	// York it moves to), the file share's web front end at Leeds. Nothing
	// listens on SMB's 445 and 139: no flow ever gets that far.
	port := func(p uint16) uint16 {
		if opts.anyPort {
			return 0
		}
		return p
	}
	if w.pacs, err = startBackend("127.0.0.20", port(8443), "PACS viewer at York", true); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.pacs.close)
	if w.ehrLeeds, err = startBackend("127.0.0.11", port(8080), "EHR, app server leeds-ehr-01", false); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.ehrLeeds.close)
	// The York copy takes the same port when it can, as a real move would.
	if w.ehrYork, err = startBackend("127.0.0.21", w.ehrLeeds.addr.Port(), "EHR, app server york-ehr-01", false); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.ehrYork.close)
	if w.fileWeb, err = startBackend("127.0.0.30", port(8444), "file share web front end", false); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.fileWeb.close)
	if w.resolver, err = startTrustResolver(); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.resolver.close)

	w.vars = policyVars{
		Keys: pub, Sites: sites, Clients: clients,
		PACS: w.pacs.addr.String(), EHRSite: leeds, EHR: w.ehrLeeds.addr.String(), FileWeb: w.fileWeb.addr.String(),
		RadiologyReadsPACS: true, Domain: domain,
	}
	if err := w.writeFiles(); err != nil {
		return nil, err
	}

	// York first: Leeds's first probe of its site link then finds York
	// listening, and the link is up at once.
	for _, s := range []string{york, leeds} {
		if err := w.startGateway(s); err != nil {
			return nil, fmt.Errorf("gateway %s: %w", s, err)
		}
	}
	for _, c := range clients {
		if err := w.startClient(c); err != nil {
			return nil, fmt.Errorf("client %s: %w", c.Name, err)
		}
	}
	if err := w.waitLink(ctx, leeds, york, 10*time.Second); err != nil {
		return nil, err
	}
	return w, nil
}

// writeFiles writes the shared policy, the blocklist and each gateway's
// directory (gateway.toml and its private key).
func (w *world) writeFiles() error {
	if _, err := w.writePolicy(); err != nil {
		return err
	}
	blocklist := "# malware blocklist of the demo trust\n" + c2Blocklist + "\n"
	if err := os.WriteFile(filepath.Join(w.dir, "malware.txt"), []byte(blocklist), 0o644); err != nil {
		return err
	}
	for _, s := range sites {
		d := filepath.Join(w.dir, s.Name)
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "gateway.key"), []byte(w.keys[s.Name].Base64()+"\n"), 0o600); err != nil {
			return err
		}
		cfg := fmt.Sprintf(`site = %q
policy = "../policy.toml"
private_key_file = "gateway.key"
listen = "127.0.0.1:%d"

[dns]
upstream = [%q]
blocklists = ["../malware.txt"]

[log]
level = "warn"

[limits]
drain = "1s"
`, s.Name, s.Port, w.resolver.addr.String())
		if err := os.WriteFile(filepath.Join(d, "gateway.toml"), []byte(cfg), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writePolicy writes policy.toml from w.vars, atomically (temporary file
// and rename), as an operator's deployment would. It returns the lines
// that changed, as a diff.
func (w *world) writePolicy() ([]string, error) {
	var b bytes.Buffer
	if err := policyTemplate.Execute(&b, w.vars); err != nil {
		return nil, err
	}
	path := filepath.Join(w.dir, "policy.toml")
	old, _ := os.ReadFile(path) // none the first time
	tmp := filepath.Join(w.dir, ".policy.toml.tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return lineDiff(string(old), b.String()), nil
}

// lineDiff returns the lines only in a ("- ") and only in b ("+ "), in
// order, by longest common subsequence: policy.toml is short. It matches
// from the end, so that a removed [[rule]] shows with its own header, and
// lists removals before additions.
func lineDiff(a, b string) []string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Reverse(x)
	slices.Reverse(y)
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			if y[j] != "" {
				out = append(out, "+ "+y[j])
			}
			j++
		default:
			if x[i] != "" {
				out = append(out, "- "+x[i])
			}
			i++
		}
	}
	slices.Reverse(out)
	return out
}

func (w *world) startGateway(site string) error {
	cfg, err := gateway.LoadConfig(filepath.Join(w.dir, site, "gateway.toml"))
	if err != nil {
		return err
	}
	g, err := gateway.Start(cfg, gateway.Options{
		Bind:   w.sw.Bind(netip.MustParseAddr("127.0.0.1")),
		Audit:  gateway.NewAuditLogger(w.audit.writer(site)),
		Logger: w.opLog.With("gateway", site),
	})
	if err != nil {
		return err
	}
	w.gws[site] = g
	w.closers = append(w.closers, func() { g.Close() })
	return nil
}

func (w *world) startClient(cs clientSpec) error {
	c, err := wgclient.New(wgclient.Config{
		PrivateKey:    w.keys[cs.Name],
		Addresses:     []netip.Addr{netip.MustParseAddr(cs.Address)},
		PeerPublicKey: w.keys[cs.Site].PublicKey(),
		PeerEndpoint:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(site(cs.Site).Port)),
		// What a wg-quick config from `wardgate peer add` routes: the
		// overlay and the service addresses, nothing else.
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.0/16"), netip.MustParsePrefix("100.81.0.0/16")},
		Bind:       w.sw.Bind(netip.MustParseAddr("127.0.0.2")),
	})
	if err != nil {
		return err
	}
	w.clients[cs.Name] = c
	w.closers = append(w.closers, func() { c.Close() })
	return nil
}

// waitLink waits until gateway from has a healthy site link to site to.
func (w *world) waitLink(ctx context.Context, from, to string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		for _, l := range w.gws[from].Status().SiteLinks {
			if l.Site == to && l.Healthy && l.PolicyHash != "" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the site link %s -> %s did not come up within %v", from, to, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// close stops everything in reverse order of starting and removes the
// files.
func (w *world) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
	w.closers = nil
}

// site returns the spec of a site by name.
func site(name string) siteSpec {
	for _, s := range sites {
		if s.Name == name {
			return s
		}
	}
	panic("demo: unknown site " + name)
}

// siteAddr is the overlay address of a site's gateway (its DNS server).
func siteAddr(name string) netip.Addr { return netip.MustParseAddr(site(name).Address) }

// backend is an HTTP server on loopback standing in for a clinical system.
// "/" answers with its name; "/stream" (when streaming) sends a line every
// 100 ms until the client goes away, as an image viewer loading slices does.
type backend struct {
	addr netip.AddrPort
	name string
	srv  *http.Server
	wg   sync.WaitGroup
}

// startBackend listens on ip:port, or on a free port of ip when port is
// taken (another demo running), or on 127.0.0.1 when ip is not usable.
func startBackend(ip string, port uint16, name string, streaming bool) (*backend, error) {
	ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		ln, err = net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	}
	if err != nil {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
	}
	if err != nil {
		return nil, err
	}
	b := &backend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "%s: %s\n", name, r.URL.Path)
	})
	if streaming {
		mux.HandleFunc("/stream", func(rw http.ResponseWriter, r *http.Request) {
			fl := http.NewResponseController(rw)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for i := 1; i <= 600; i++ {
				if _, err := fmt.Fprintf(rw, "slice %03d\n", i); err != nil {
					return
				}
				if fl.Flush() != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-t.C:
				}
			}
		})
	}
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.srv.Serve(ln)
	}()
	return b, nil
}

func (b *backend) close() {
	b.srv.Close()
	b.wg.Wait()
}

// trustResolver is the trust's own DNS resolver, the gateways' upstream
// for names that are not services. It answers every A question with
// publicAddr and remembers what it was asked.
type trustResolver struct {
	addr  netip.AddrPort
	srv   *dns.Server
	mu    sync.Mutex
	asked map[string]int
	done  chan struct{}
}

func startTrustResolver() (*trustResolver, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &trustResolver{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), asked: make(map[string]int), done: make(chan struct{})}
	started := make(chan struct{})
	r.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(r.serve)}
	go func() {
		defer close(r.done)
		r.srv.ActivateAndServe()
	}()
	select {
	case <-started:
	case <-r.done:
		return nil, errors.New("trust resolver did not start")
	}
	return r, nil
}

func (r *trustResolver) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	if len(q.Question) == 1 {
		name := q.Question[0].Name
		r.mu.Lock()
		r.asked[dns.CanonicalName(name)]++
		r.mu.Unlock()
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   net.ParseIP(publicAddr).To4(),
			}}
		}
	}
	w.WriteMsg(m)
}

// askedAbout returns how many times the resolver was asked about name.
func (r *trustResolver) askedAbout(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[dns.CanonicalName(name)]
}

func (r *trustResolver) close() {
	r.srv.Shutdown()
	<-r.done
}
