// Package enroll adds identities to a policy.toml, gives them new keys and
// removes them again, for `wardgate peer add`, `peer rotate`, `peer remove`
// and `peer list`, and renders the wg-quick configuration a client needs.
//
// The policy file is edited as text, never decoded and re-encoded: an
// [[identity]] block is inserted after the last one, one key line is
// changed, or one block is replaced by a retired-address line, so every
// comment and the layout of the rest stay byte for byte. The edited text is
// parsed with policy.Parse before anything is written, and checked to hold
// exactly the intended change; a result that is invalid writes nothing. The
// file is replaced atomically (see WriteFileAtomic).
package enroll

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
)

// Request is an identity to add.
type Request struct {
	Name   string
	Site   string       // home site: the gateway the client connects to
	Groups []string     // may be empty
	Key    wgkey.Public // public key; zero: generate a key pair
}

// Added is the outcome of Add.
type Added struct {
	Identity *policy.Identity // as the edited policy has it
	Policy   *policy.Policy   // the edited policy, as written
	// PrivateKey is the generated private key; zero when the request
	// brought its own public key.
	PrivateKey wgkey.Private
	// NewGroups lists requested groups that no identity had before (and so
	// no rule can name yet).
	NewGroups []string
}

// ErrChanged is returned when the policy file changed on disk between
// reading and writing it (another `peer add` or an editor): nothing was
// written, and running the command again is safe.
var ErrChanged = errors.New("policy file changed while it was being edited; nothing written, run the command again")

// Add inserts an identity for req into the policy file at path (after the
// last [[identity]], see InsertIdentity), allocating its address with
// NextAddress, and writes the file atomically. The edited text is
// validated first: if policy.Parse refuses it (the error is its
// *policy.LoadError) or it does not hold exactly the new identity, the file
// is left as it was.
func Add(path string, req Request) (*Added, error) {
	orig, pol, err := ReadForEdit(path)
	if err != nil {
		return nil, err
	}
	if pol.Identity(req.Name) != nil {
		return nil, fmt.Errorf("identity %q already exists in %s", req.Name, path)
	}
	site := pol.Site(req.Site)
	if site == nil {
		return nil, fmt.Errorf("unknown site %q (not a [[site]] in %s)", req.Site, path)
	}
	out := &Added{}
	key := req.Key
	if key.IsZero() {
		priv, err := wgkey.NewPrivate()
		if err != nil {
			return nil, err
		}
		out.PrivateKey, key = priv, priv.Public()
	}
	addr, err := NextAddress(pol, RetiredAddresses(orig))
	if err != nil {
		return nil, err
	}
	for _, g := range req.Groups {
		if !slices.Contains(pol.Groups(), g) && !slices.Contains(out.NewGroups, g) {
			out.NewGroups = append(out.NewGroups, g)
		}
	}
	edited := InsertIdentity(orig, IdentityBlock(req.Name, key, addr, req.Site, req.Groups))
	np, err := policy.Parse(path, edited)
	if err != nil {
		// Lines after the new block point at the file on disk.
		same, added := commonPrefixLines(orig, edited), bytes.Count(edited, []byte("\n"))-bytes.Count(orig, []byte("\n"))
		mapProblems(err, func(p *policy.Problem) {
			switch {
			case p.Line > same+added:
				p.Line -= added
			case p.Line > same:
				p.Msg += " (in the new [[identity]] block)"
			}
		})
		return nil, fmt.Errorf("the edited policy would be invalid, nothing written: %w", err)
	}
	id := np.Identity(req.Name)
	if id == nil || id.Key != key || id.Address != addr || id.Site != req.Site ||
		len(np.Identities()) != len(pol.Identities())+1 || !sameOthers(pol, np) {
		return nil, fmt.Errorf("the edited %s does not hold exactly the new identity %q (is the last [[identity]] followed by a multi-line string?); nothing written", path, req.Name)
	}
	if err := WriteIfUnchanged(path, orig, edited); err != nil {
		return nil, err
	}
	out.Identity, out.Policy = id, np
	return out, nil
}

// ReadForEdit reads the policy file at path and parses it: the text an
// edit starts from and the policy it must keep valid. A policy that is
// already invalid is refused before any edit.
func ReadForEdit(path string) ([]byte, *policy.Policy, error) {
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	pol, err := policy.Parse(path, orig)
	if err != nil {
		return nil, nil, fmt.Errorf("the policy is invalid before the edit: %w", err)
	}
	return orig, pol, nil
}

// Remove deletes the [[identity]] block of the identity called name from
// the policy file at path and writes the file atomically. The block of a
// WireGuard identity is replaced by a retired-address line (RetireNote), so
// that its address is never handed to another key (see NextAddress); a LAN
// identity's block is cut out (its address, when derived, comes from its
// name). A rule or test that names the identity makes the result invalid:
// Remove then refuses with the policy's error and writes nothing. It
// returns the removed identity (as the old policy had it) and the edited
// policy.
func Remove(path, name string) (*policy.Identity, *policy.Policy, error) {
	orig, pol, err := ReadForEdit(path)
	if err != nil {
		return nil, nil, err
	}
	id := pol.Identity(name)
	if id == nil {
		return nil, nil, fmt.Errorf("no identity %q in %s", name, path)
	}
	var edited []byte
	if id.IsLAN() {
		edited, err = RemoveIdentity(orig, name)
	} else {
		edited, err = RetireIdentity(orig, name, RetireNote(id, time.Now()))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	np, err := policy.Parse(path, edited)
	if err != nil {
		// Point at the lines of the file as it is on disk, not as edited.
		same, cut := commonPrefixLines(orig, edited), bytes.Count(orig, []byte("\n"))-bytes.Count(edited, []byte("\n"))
		mapProblems(err, func(p *policy.Problem) {
			if p.Line > same {
				p.Line += cut
			}
		})
		return nil, nil, fmt.Errorf("removing identity %q would make the policy invalid (remove or change what names it first), nothing written: %w", name, err)
	}
	if np.Identity(name) != nil || len(np.Identities()) != len(pol.Identities())-1 || !sameOthers(pol, np) {
		return nil, nil, fmt.Errorf("%s: removing the block of %q would change more than that identity; nothing written", path, name)
	}
	if err := WriteIfUnchanged(path, orig, edited); err != nil {
		return nil, nil, err
	}
	return id, np, nil
}

// RetireNote is the retired-address line that replaces a removed
// identity's block.
func RetireNote(id *policy.Identity, now time.Time) string {
	return fmt.Sprintf("# retired address %s (identity %s, removed %s): wardgate peer add does not hand it out again",
		id.Address, id.Name, now.UTC().Format("2006-01-02"))
}

// Rotated is the outcome of Rotate.
type Rotated struct {
	Old      *policy.Identity // as the policy had it
	Identity *policy.Identity // as the edited policy has it
	Policy   *policy.Policy   // the edited policy, as written
	// PrivateKey is the generated private key; zero when the caller
	// brought the new public key.
	PrivateKey wgkey.Private
}

// Rotate gives the identity called name a new key in the policy file at
// path: key, or a generated key pair when key is zero. Only its key line
// changes; its address, site and groups stay, so rules, tests and audit
// history still mean the same device. The edited text is validated like
// Add's (a key another identity or site has is refused) and written
// atomically.
func Rotate(path, name string, key wgkey.Public) (*Rotated, error) {
	orig, pol, err := ReadForEdit(path)
	if err != nil {
		return nil, err
	}
	old := pol.Identity(name)
	if old == nil {
		return nil, fmt.Errorf("no identity %q in %s", name, path)
	}
	if old.IsLAN() {
		return nil, fmt.Errorf("identity %q is a LAN device (source %s): it has no key to rotate", name, old.Source)
	}
	out := &Rotated{Old: old}
	if key.IsZero() {
		priv, err := wgkey.NewPrivate()
		if err != nil {
			return nil, err
		}
		out.PrivateKey, key = priv, priv.Public()
	}
	if key == old.Key {
		return nil, fmt.Errorf("identity %q already has key %s", name, key)
	}
	edited, err := ReplaceKey(orig, name, old.Key, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	np, err := policy.Parse(path, edited)
	if err != nil {
		return nil, fmt.Errorf("the new key would make the policy invalid, nothing written: %w", err)
	}
	id := np.Identity(name)
	if id == nil || id.Key != key || id.Address != old.Address || id.Site != old.Site ||
		!slices.Equal(id.Groups, old.Groups) || !sameOthers(pol, np) || !sameIdentitiesBut(pol, np, name) {
		return nil, fmt.Errorf("%s: changing the key line of %q would change more than its key; nothing written", path, name)
	}
	if err := WriteIfUnchanged(path, orig, edited); err != nil {
		return nil, err
	}
	out.Identity, out.Policy = id, np
	return out, nil
}

// sameIdentitiesBut reports whether two policies have the same identities,
// in the same order and with the same keys and addresses, except the one
// called name.
func sameIdentitiesBut(a, b *policy.Policy, name string) bool {
	if len(a.Identities()) != len(b.Identities()) {
		return false
	}
	for i, x := range a.Identities() {
		y := b.Identities()[i]
		if x.Name != y.Name || x.Name != name && (x.Key != y.Key || x.Address != y.Address || x.Source != y.Source || x.Site != y.Site) {
			return false
		}
	}
	return true
}

// mapProblems applies f to every problem of a *policy.LoadError in err.
func mapProblems(err error, f func(*policy.Problem)) {
	var le *policy.LoadError
	if errors.As(err, &le) {
		for i := range le.Problems {
			f(&le.Problems[i])
		}
	}
}

// commonPrefixLines counts the whole lines a and b start with in common.
func commonPrefixLines(a, b []byte) int {
	n := 0
	for {
		i, j := bytes.IndexByte(a, '\n'), bytes.IndexByte(b, '\n')
		if i < 0 || j < 0 || i != j || !bytes.Equal(a[:i], b[:j]) {
			return n
		}
		a, b, n = a[i+1:], b[j+1:], n+1
	}
}

// sameOthers reports whether two policies agree on everything an identity
// edit must not touch: the overlay, sites, services, rules.
func sameOthers(a, b *policy.Policy) bool {
	if a.Overlay() != b.Overlay() || len(a.Sites()) != len(b.Sites()) ||
		len(a.Services()) != len(b.Services()) || len(a.Rules()) != len(b.Rules()) {
		return false
	}
	for i, s := range a.Sites() {
		if *s != *b.Sites()[i] {
			return false
		}
	}
	for i, s := range a.Services() {
		if s.Name != b.Services()[i].Name {
			return false
		}
	}
	for i, r := range a.Rules() {
		if r.Name != b.Rules()[i].Name {
			return false
		}
	}
	return true
}

// WriteIfUnchanged writes data to path atomically unless the file no longer
// holds orig. The check and the rename are not one atomic step, but the
// window is the time of one write; it catches a concurrent `peer add`
// almost always, where without it one of two additions would be lost.
func WriteIfUnchanged(path string, orig, data []byte) error {
	now, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(now, orig) {
		return ErrChanged
	}
	return WriteFileAtomic(path, data)
}

// NextAddress allocates an overlay address for a new identity: the lowest
// address of [overlay] prefix above every site's address that no identity
// uses and that is not retired. Sites conventionally take the first
// addresses of the prefix (100.80.0.1, .2, ...), so identities start after
// them; the choice is deterministic (the same policy text always gives the
// same address).
//
// A removed identity's address is retired (RetiredAddresses), never handed
// to another key: until every gateway has reloaded, a gateway still running
// the old policy takes the address for the removed identity, so a new
// client homed at a reloaded gateway would be decided there as the old
// identity (with its rules) on every flow it relays; and audit records of
// the old identity would name an address that now means someone else. The
// network address, the sites' addresses and (for IPv4) the prefix's last
// address are never handed out either.
func NextAddress(p *policy.Policy, retired []netip.Addr) (netip.Addr, error) {
	pfx := p.Overlay().Prefix.Masked()
	used := make(map[netip.Addr]bool)
	start := pfx.Addr().Next() // skip the network address
	for _, s := range p.Sites() {
		used[s.Address] = true
		if pfx.Contains(s.Address) && !s.Address.Less(start) {
			start = s.Address.Next()
		}
	}
	for _, id := range p.Identities() {
		if id.Address.IsValid() {
			used[id.Address] = true
		}
	}
	for _, a := range retired {
		used[a] = true
	}
	last := lastAddr(pfx)
	for a := start; a.IsValid() && pfx.Contains(a); a = a.Next() {
		if a.Is4() && a == last {
			break
		}
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in overlay prefix %s above the sites (retired addresses are not reused: delete their `# retired address` lines to free them)", pfx)
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// IdentityBlock renders one [[identity]] table in the layout of the example
// policy. Names and groups are quoted as TOML basic strings; policy names
// allow only letters, digits, '.', '_' and '-', which need no escapes.
func IdentityBlock(name string, key wgkey.Public, addr netip.Addr, site string, groups []string) string {
	var b strings.Builder
	b.WriteString("[[identity]]\n")
	fmt.Fprintf(&b, "name = %s\n", tomlString(name))
	fmt.Fprintf(&b, "key = %s\n", tomlString(key.String()))
	fmt.Fprintf(&b, "address = %s\n", tomlString(addr.String()))
	fmt.Fprintf(&b, "site = %s\n", tomlString(site))
	qs := make([]string, len(groups))
	for i, g := range groups {
		qs[i] = tomlString(g)
	}
	fmt.Fprintf(&b, "groups = [%s]\n", strings.Join(qs, ", "))
	return b.String()
}

// tomlString quotes s as a TOML basic string. Go's quoting matches TOML's
// for printable text; anything else is left to policy.Parse to refuse.
func tomlString(s string) string { return strconv.Quote(s) }

// AppendBlock appends block to the end of the policy text, after one
// blank line, keeping everything before it as it is.
func AppendBlock(orig []byte, block string) []byte {
	out := bytes.Clone(orig)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n\n")) {
		out = append(out, '\n')
	}
	return append(out, block...)
}
