package gateway

// linkStatus reports the site links. Stub until site links land.
func (g *Gateway) linkStatus(st *state) []LinkStatus { return nil }
