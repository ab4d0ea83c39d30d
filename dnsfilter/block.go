package dnsfilter

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
)

// blocklist is the union of the loaded list files. Immutable once built.
type blocklist struct {
	names dnsname.Set
	files []string
}

// hostsBoilerplate are the names hosts-format lists map to themselves; they
// are skipped rather than blocked.
var hostsBoilerplate = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true,
	"broadcasthost": true, "ip6-localhost": true, "ip6-loopback": true,
	"ip6-localnet": true, "ip6-mcastprefix": true, "ip6-allnodes": true,
	"ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// loadBlocklists reads every file into one list. Errors name file:line.
func loadBlocklists(paths []string) (*blocklist, error) {
	bl := &blocklist{files: append([]string(nil), paths...)}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("dnsfilter: blocklist: %w", err)
		}
		err = bl.read(p, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return bl, nil
}

// read parses one list: a name or pattern per line, or a hosts-file line
// "ADDRESS name [name...]"; "#" starts a comment.
func (bl *blocklist) read(file string, f *os.File) error {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if err := bl.parseLine(sc.Text()); err != nil {
			return fmt.Errorf("dnsfilter: %s:%d: %w", file, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("dnsfilter: %s:%d: %w", file, line+1, err)
	}
	return nil
}

func (bl *blocklist) parseLine(text string) error {
	if i := strings.IndexByte(text, '#'); i >= 0 {
		text = text[:i]
	}
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return nil
	}
	if _, err := netip.ParseAddr(fields[0]); err == nil {
		if len(fields) == 1 {
			return fmt.Errorf("hosts line %q has no name", strings.TrimSpace(text))
		}
		for _, name := range fields[1:] {
			name = dnsname.Canonical(name)
			if hostsBoilerplate[name] {
				continue
			}
			if err := bl.names.Add(name); err != nil {
				return err
			}
		}
		return nil
	}
	if len(fields) > 1 {
		return fmt.Errorf("more than one name on a line: %q", strings.TrimSpace(text))
	}
	return bl.names.Add(dnsname.Canonical(fields[0]))
}

// blockStage answers NXDOMAIN for names on the blocklist it is given.
type blockStage struct {
	list func() *blocklist
}

func (s blockStage) answer(_ context.Context, q *query) *dns.Msg {
	bl := s.list()
	if bl == nil {
		return nil
	}
	e := bl.names.Match(q.name)
	if e == "" {
		return nil
	}
	q.blocked = e
	m := new(dns.Msg)
	m.SetRcode(q.req, dns.RcodeNameError)
	m.RecursionAvailable = true
	return m
}
