package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// What the clients do, through their own WireGuard tunnels: look names up
// at their gateway's DNS and talk HTTP to services at their VIPs.

// lookup asks who's gateway (its overlay address, port 53) for name's A
// record, over UDP through the tunnel. It returns the reply as the client
// got it.
func (w *world) lookup(ctx context.Context, who, name string) (*dns.Msg, error) {
	c := w.clients[who]
	gw := siteAddr(clientSite(who))
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var lastErr error
	for range 3 { // UDP: an application retries
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		conn, err := c.DialUDP(netip.AddrPortFrom(gw, 53))
		if err != nil {
			return nil, err
		}
		dc := &dns.Conn{Conn: conn}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		err = dc.WriteMsg(q)
		var r *dns.Msg
		if err == nil {
			r, err = dc.ReadMsg()
		}
		conn.Close()
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%s: lookup %s: %w", who, name, lastErr)
}

// answerA returns the first A record's address in r.
func answerA(r *dns.Msg) (netip.Addr, bool) {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, ok := netip.AddrFromSlice(a.A.To4())
			return ip, ok
		}
	}
	return netip.Addr{}, false
}

func clientSite(who string) string {
	for _, c := range clients {
		if c.Name == who {
			return c.Site
		}
	}
	panic("demo: unknown client " + who)
}

// httpClient is an HTTP client whose connections go through who's tunnel,
// one connection per request, so that every request is one flow.
func (w *world) httpClient(who string) *http.Client {
	c := w.clients[who]
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return c.DialContext(ctx, "tcp4", addr)
			},
			DisableKeepAlives: true,
		},
	}
}

// get fetches path from VIP:port as name, through who's tunnel, and
// returns the status line and the first line of the body.
func (w *world) get(ctx context.Context, who, name string, dst netip.AddrPort, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dst.String()+path, nil)
	if err != nil {
		return "", err
	}
	req.Host = name
	resp, err := w.httpClient(who).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(body), "\n")
	return fmt.Sprintf("HTTP %s %q", resp.Status, first), nil
}

// dial opens a TCP connection to dst through who's tunnel and reports how
// long the answer took: the connection (closed again at once) or the error.
func (w *world) dial(ctx context.Context, who string, dst netip.AddrPort) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	c, err := w.clients[who].DialContext(ctx, "tcp4", dst.String())
	d := time.Since(start)
	if err == nil {
		c.Close()
	}
	return d, err
}

// refused says whether err is the refusal a denied TCP connection gets.
func refused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "refused")
}

// stream is a long-lived HTTP response being read line by line.
type stream struct {
	resp   *http.Response
	lines  chan string
	ended  chan error // the read error that ended the stream
	cancel context.CancelFunc
}

// openStream starts a GET of path and reads the body in the background.
func (w *world) openStream(ctx context.Context, who, name string, dst netip.AddrPort, path string) (*stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dst.String()+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Host = name
	hc := w.httpClient(who)
	hc.Timeout = 0 // the stream lasts as long as the flow
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("stream: HTTP %s", resp.Status)
	}
	s := &stream{resp: resp, lines: make(chan string, 1024), ended: make(chan error, 1), cancel: cancel}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		s.ended <- err
		close(s.lines)
	}()
	return s, nil
}

// next waits up to d for the next line.
func (s *stream) next(d time.Duration) (string, error) {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return "", errors.New("stream ended")
		}
		return l, nil
	case <-time.After(d):
		return "", fmt.Errorf("no data within %v", d)
	}
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}
