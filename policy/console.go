package policy

// The console is a service every policy has without declaring it: the
// gateway's web console, served by each gateway on its own overlay address,
// port 80. Rules grant it like any other service, by naming it in `to`;
// `to = ["*"]` does not include it, because the console shows the whole
// segmentation map and should be given on purpose. A policy that declares
// a service of that name is refused.

// ConsoleService is the reserved name of the built-in console service.
const ConsoleService = "console"

// ConsolePort is the TCP port the console answers on, at each gateway's
// overlay address.
const ConsolePort = 80

// Console returns the built-in console service. It is not among
// Services() (it has no site, endpoints or VIP: every gateway serves it on
// its own address), but Service(ConsoleService) finds it, and Decide and
// Explain answer for it.
func (p *Policy) Console() *Service { return p.console }

// addConsole gives p its console service, after the file's services so that
// theirs keep IDs 0..len(services)-1 (and the decision tables' "*" slot
// follows it).
func (b *builder) addConsole(p *Policy) {
	p.console = &Service{
		ID:    len(p.services),
		Name:  ConsoleService,
		Ports: []PortRange{{Proto: ProtoTCP, Lo: ConsolePort, Hi: ConsolePort}},
	}
	p.svcByName[ConsoleService] = p.console
}

// serviceByID returns the service with that ID, the console included.
func (p *Policy) serviceByID(id int) *Service {
	if id == len(p.services) {
		return p.console
	}
	return p.services[id]
}

// reachesConsole reports whether an allow rule not expired at load names id
// and the console (the reach bitset leaves the console out).
func (p *Policy) reachesConsole(id *Identity) bool {
	for _, pr := range p.dec.principals[id.ID] {
		for _, e := range p.console.table.find(pr) {
			if e.allow && !e.expiredAt(p.dec.compiledAt) {
				return true
			}
		}
	}
	return false
}
