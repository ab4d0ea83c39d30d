package gateway

// startAdmin serves the admin API on [admin] socket (when set). Stub: the
// admin API is being written.
func (g *Gateway) startAdmin() error { return nil }

// stopAdmin stops the admin API and removes its socket.
func (g *Gateway) stopAdmin() {}
